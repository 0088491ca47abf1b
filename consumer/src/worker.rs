//! One job message, start to finish: look at the job; if it is not finished, put the message back with a growing
//! delay; if it is, relay every file, check its records against Zuora's count, and publish each ([`crate::publish`];
//! what each step guarantees, and the tests that prove it: docs/architecture.md, "Guarantees").
//!
//! # A job message's states
//! received -> job running: re-sent with a delay (`polls` attribute + 1), original deleted -> ... -> job finished:
//! files relayed and verified -> published -> message deleted. A job that failed at Zuora, outlived its deadline, or
//! whose files keep failing verification goes to the jobs DLQ with its reason. Any other failure leaves the message
//! to be received again. A file whose metadata JSON already exists was published before: its completion message is
//! sent again (same deduplication id) and nothing is uploaded.

use crate::publish::{BatchToPublish, FileToPublish};
use crate::relay::compress::Compression;
use crate::relay::pool::PartPool;
use crate::relay::{Destination, PendingUpload, RelayError, RelaySettings, UploadTracker, relay};
use crate::verify;
use common::catalogue::{Catalogue, ObjectSpec};
use common::clock::Clock;
use common::config::{ConsumerSettings, FullExportConfig, GzipDownloads};
use common::ledger::{Ledger, LedgerError};
use common::marks::PublishedMark;
use common::messages::{
    CompletionMessage, ExactWindow, ExportFrom, ExportRequest, JobFinished, JobKind, JobMessage, JobsQueueMessage,
    MAX_REQUESTS_AGAIN, MESSAGE_VERSION, ends_in_the_future,
};
use common::queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage};
use common::services::CompletionQueues;
use common::store::{ByteChunks, ObjectStore, StoreError};
use common::zuora::{Batch, Job, Phase, ZuoraClient, ZuoraError};
use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::{Instrument, info, info_span, warn};

/// Everything a worker talks to.
pub struct Worker {
    /// Zuora.
    pub zuora: ZuoraClient,
    /// S3 (or the local lake): files, metadata JSON.
    pub store: Arc<dyn ObjectStore>,
    /// The producer's ledger, where published marks go.
    pub ledger: Ledger,
    /// Jobs queue (for putting a message back with a delay).
    pub jobs: Arc<dyn Queue>,
    /// Jobs dead-letter queue.
    pub jobs_dlq: Arc<dyn Queue>,
    /// Where completion messages go: the lake queue (and the table writer's).
    pub completions: CompletionQueues,
    /// Requests queue (for re-requesting a purged window).
    pub requests: Arc<dyn Queue>,
    /// Objects and their targets.
    pub catalogue: Catalogue,
    /// Part buffers, shared by every job of the process.
    pub pool: Arc<PartPool>,
    /// How files are cut into parts.
    pub relay: RelaySettings,
    /// Uploads abandoned by cancelled work, aborted at shutdown.
    pub uploads: Arc<UploadTracker>,
    /// Consumer settings.
    pub settings: ConsumerSettings,
    /// How full exports sized by their data go on (`full_export.window_rows`).
    pub full_export: FullExportConfig,
    /// Where "now" comes from.
    pub clock: Clock,
    /// The task's scale-in protection while jobs are in flight (off outside ECS).
    pub protection: crate::protection::TaskProtection,
    /// Zuora's descriptions of the objects files name, for their schema.
    pub schemas: crate::schema::Schemas,
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
    /// A notification of a job the ledger does not know: deleted (the job's own message, if any, still polls).
    Ignored {
        /// Why.
        reason: String,
    },
}

/// S3's CopyObject copies objects of at most 5 GB; a larger file is streamed to the fixed key instead.
const COPY_OBJECT_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

/// How often a transfer's progress is looked at.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// A file missing (404) sooner than this after its job ran was not purged (Zuora keeps files about 72 hours):
/// the path is wrong, and asking again would only fail again.
const PURGED_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// A failure that may pass: the message is left to be received again.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// Zuora.
    #[error(transparent)]
    Zuora(#[from] ZuoraError),
    /// S3 (multipart).
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// S3 (small objects).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A queue.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The ledger.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Why a batch could not be published.
enum BatchFailure {
    Retry(WorkError),
    Fatal(String),
    /// Zuora purged its files: the job asks for its window again, once for all such batches.
    Purged {
        object: String,
        full: bool,
    },
}

impl<E: Into<WorkError>> From<E> for BatchFailure {
    /// A failure that cannot pass (S3 access denied, no such bucket) dead-letters the job at once with its reason
    /// instead of downloading the files again on every delivery.
    fn from(e: E) -> Self {
        let e = e.into();
        if e.is_permanent() { Self::Fatal(e.to_string()) } else { Self::Retry(e) }
    }
}

impl WorkError {
    /// True when doing the work again cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Store(e) | Self::Relay(RelayError::Store(e)) | Self::Ledger(LedgerError::Store(e)) => {
                e.is_permanent()
            }
            Self::Zuora(_) | Self::Relay(_) | Self::Queue(_) | Self::Ledger(_) => false,
        }
    }
}

impl Worker {
    /// Works on one job message and settles it (deleted, re-sent with a delay, or dead-lettered).
    pub async fn handle(&self, message: &ReceivedMessage) -> Result<Settled, WorkError> {
        match JobsQueueMessage::parse(&message.body) {
            Ok(JobsQueueMessage::Job(job_message)) => {
                let span = info_span!("job", job_id = %job_message.job_id, kind = ?job_message.kind);
                self.handle_job(message, job_message).instrument(span).await
            }
            Ok(JobsQueueMessage::Finished(finished)) => {
                let span = info_span!("job", job_id = %finished.job_finished, notified = true);
                self.handle_finished(message, finished).instrument(span).await
            }
            Err(e) => self.dead_letter(message, format!("not a job message: {e}")).await,
        }
    }

    /// Zuora said a job finished: its record in the ledger says what the job is, and it is published now, not at
    /// the job message's next poll (which then finds it published).
    async fn handle_finished(&self, message: &ReceivedMessage, finished: JobFinished) -> Result<Settled, WorkError> {
        let job_id = finished.job_finished;
        if !common::zuora::is_zuora_id(&job_id) {
            let reason = format!("jobFinished {job_id:?} is not a Zuora id (32 hexadecimal digits)");
            return self.dead_letter(message, reason).await;
        }
        match self.ledger.job(&job_id).await? {
            Some(record) => self.handle_job(message, record.job_message()).await,
            None => {
                // Not a job of this exporter's (or not recorded yet): its own job message, if any, still polls.
                let reason = format!("Zuora said job {job_id} finished, and the ledger has no such job");
                warn!(%reason, "notification ignored");
                self.jobs.delete(&message.receipt).await?;
                Ok(Settled::Ignored { reason })
            }
        }
    }

    async fn handle_job(&self, message: &ReceivedMessage, job_message: JobMessage) -> Result<Settled, WorkError> {
        if job_message.version != MESSAGE_VERSION {
            return self
                .dead_letter(message, format!("job message version {} is not supported", job_message.version))
                .await;
        }
        if !common::zuora::is_zuora_id(&job_message.job_id) {
            let reason = format!("jobId {:?} is not a Zuora id (32 hexadecimal digits)", job_message.job_id);
            return self.dead_letter(message, reason).await;
        }
        if let Some(reason) = ends_in_the_future(job_message.window.to, self.clock.now()) {
            return self.dead_letter(message, format!("the job's window {reason}")).await;
        }
        if self.ledger.marks().job_published(&job_message.job_id).await? {
            self.jobs.delete(&message.receipt).await?;
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
        match job.status.phase() {
            Phase::Running => return self.wait(message, &job_message, &job).await,
            Phase::Failed => {
                let details: Vec<String> = job
                    .batches
                    .iter()
                    .filter_map(|b| {
                        b.message.as_ref().filter(|m| !m.is_empty()).map(|m| format!("{}: {m}", name_of(b)))
                    })
                    .collect();
                let reason = format!("Zuora job {} ended {} {}", job.id, job.status, details.join("; "));
                let reason = reason.trim_end().to_owned();
                // Each object by its own batch's kind: a first load is asked for in full, an increment from its
                // window's start (a job mixing both must not become a full export of every object).
                let objects: Vec<(String, bool)> = job_message
                    .objects
                    .iter()
                    .map(|object| (object.clone(), was_full_load(&job_message, &job, object)))
                    .collect();
                if self.ask_again_by_kind(&job_message, &objects, "job", &reason).await? {
                    self.jobs.delete(&message.receipt).await?;
                    return Ok(Settled::AskedAgain { reason });
                }
                let reason = format!("{reason}; its window was asked for again {MAX_REQUESTS_AGAIN} times already");
                return self.dead_letter(message, reason).await;
            }
            Phase::Succeeded => {}
        }
        // The job was found completed now: its wait at Zuora ends here, for every batch alike.
        let found_completed = self.clock.now();
        let mut files = 0;
        let mut failures = Vec::new();
        let mut purged: Vec<(String, bool)> = Vec::new();
        // Every object the job was submitted for must come back: Zuora leaves out a query on an object the user
        // cannot read (error 90018) without failing the job.
        let missing: Vec<&str> = job_message
            .objects
            .iter()
            .filter(|o| !job.batches.iter().any(|b| b.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(o))))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            failures.push(format!(
                "Zuora's job {} has no batch for {} (a query Zuora left out: can the API user read the object?)",
                job.id,
                missing.join(", ")
            ));
        }
        for batch in &job.batches {
            if batch.status.phase() != Phase::Succeeded {
                failures.push(format!(
                    "{} ended {} {}",
                    name_of(batch),
                    batch.status,
                    batch.message.clone().unwrap_or_default()
                ));
                continue;
            }
            let span =
                info_span!("batch", object = %name_of(batch), batch_id = %batch.batch_id.clone().unwrap_or_default());
            match self.publish_batch(&job_message, &job, batch, found_completed).instrument(span).await {
                Ok(n) => files += n,
                Err(BatchFailure::Retry(e)) => return Err(e),
                Err(BatchFailure::Fatal(reason)) => failures.push(reason),
                Err(BatchFailure::Purged { object, full }) => purged.push((object, full)),
            }
        }
        // One request for the purged objects (two if full loads and increments are mixed), however many they are.
        if !purged.is_empty() {
            let names: Vec<&str> = purged.iter().map(|(o, _)| o.as_str()).collect();
            let reason = format!("files of {} purged by Zuora", names.join(", "));
            if !self.ask_again_by_kind(&job_message, &purged, "purged", &reason).await? {
                failures
                    .push(format!("{reason}, and the window was asked for again {MAX_REQUESTS_AGAIN} times already"));
            }
        }
        if !failures.is_empty() {
            return self.dead_letter(message, failures.join("; ")).await;
        }
        // The next window before the job is recorded published: a consumer stopped in between asks for it again
        // (the same request id) when the job's message comes back.
        self.continue_full_export(&job_message, &job).await?;
        self.ledger.marks().record_job_published(&job.id, files).await?;
        self.jobs.delete(&message.receipt).await?;
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
        // A new message, not a longer visibility: waiting must not use up the DLQ's receive count.
        let again =
            OutgoingMessage::new(message.body.clone()).delayed(delay).attribute("polls", (polls + 1).to_string());
        self.jobs.send(again).await?;
        self.jobs.delete(&message.receipt).await?;
        info!(job_id = %job.id, status = %job.status, delay_secs = delay.as_secs(), "job not finished, looking again later");
        Ok(Settled::Waiting { delay })
    }

    async fn dead_letter(&self, message: &ReceivedMessage, reason: String) -> Result<Settled, WorkError> {
        warn!(%reason, "job message to the dead-letter queue");
        let dead = OutgoingMessage::new(message.body.clone()).attribute("reason", reason.clone());
        self.jobs_dlq.send(dead).await?;
        self.jobs.delete(&message.receipt).await?;
        Ok(Settled::DeadLettered { reason })
    }

    async fn publish_batch(
        &self,
        job_message: &JobMessage,
        job: &Job,
        batch: &Batch,
        found_completed: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, BatchFailure> {
        let name = name_of(batch);
        let Some(object) = self.catalogue.objects.iter().find(|o| o.name.eq_ignore_ascii_case(&name)) else {
            return Err(BatchFailure::Fatal(format!("{name}: not in the catalogue")));
        };
        let Some(expected) = batch.record_count else {
            return Err(BatchFailure::Fatal(format!("{name}: Zuora gave no recordCount to verify against")));
        };
        let executed_at = job
            .start_time
            .as_ref()
            .and_then(|t| t.to_utc(self.zuora.config().data_center))
            .unwrap_or(job_message.submitted_at);
        // The batch id goes into the file's key: it must be Zuora's, not empty or a path.
        let Some(batch_id) = batch.batch_id.clone().filter(|id| common::zuora::is_zuora_id(id)) else {
            return Err(BatchFailure::Fatal(format!("{name}: batch id {:?} is not a Zuora id", batch.batch_id)));
        };
        let file_ids = batch.file_ids();
        if file_ids.is_empty() {
            return Err(BatchFailure::Fatal(format!("{name}: completed with neither a fileId nor segments")));
        }
        if let Some(bad) = file_ids.iter().find(|id| !common::zuora::is_zuora_id(id)) {
            return Err(BatchFailure::Fatal(format!("{name}: file id {bad:?} is not a Zuora id")));
        }
        let segments = file_ids.len() as u32;
        let relay = self.relay_for(job);
        let mut announced = 0u64;
        let mut todo = Vec::new();
        for (segment, file_id) in file_ids.iter().enumerate() {
            let plain =
                object.target.key_for(&object.name, executed_at.date_naive(), &job.id, &batch_id, segment as u32);
            let metadata_key = object.target.metadata_key(&plain);
            let key = format!("{plain}{}", relay.compression.extension());
            match self.store.get(&object.target.bucket, &metadata_key).await? {
                Some(metadata) => {
                    let completion = CompletionMessage::from_metadata_json(&metadata)
                        .map_err(|e| BatchFailure::Fatal(format!("{name}: metadata {metadata_key} unreadable: {e}")))?;
                    // Only the file this consumer computes is announced: metadata naming another bucket or key
                    // (written by hand, or by anyone else who can write to the bucket) is not trusted.
                    let ours = [plain.clone(), format!("{plain}.gz"), format!("{plain}.zst")];
                    if completion.bucket != object.target.bucket || !ours.contains(&completion.key) {
                        return Err(BatchFailure::Fatal(format!(
                            "{name}: metadata {metadata_key} names s3://{}/{}, not the file it describes (s3://{}/{key})",
                            completion.bucket, completion.key, object.target.bucket
                        )));
                    }
                    announced += completion.record_count;
                    self.announce(&completion, job_message.kind).await?;
                }
                None => todo.push((segment as u32, file_id.to_string(), key, metadata_key)),
            }
        }
        if todo.is_empty() {
            self.sync_legacy_key(object).await?;
            return Ok(file_ids.len());
        }
        let full = batch.full.unwrap_or(job_message.window.from.is_none());
        let mut rejected = String::new();
        'attempts: for attempt in 1..=self.settings.file_attempts {
            let mut pending = Vec::with_capacity(todo.len());
            let mut broken = None;
            for (segment, file_id, key, _) in &todo {
                let started = Instant::now();
                match self.relay_file(object, file_id, key, &relay).await {
                    Ok((upload, content_type)) => {
                        let sent = verify::Sent { content_type: content_type.as_deref(), gzip: relay.gzip_source };
                        let verdict = verify::check_file(object, sent, &upload.counter);
                        pending.push((upload, started.elapsed()));
                        if let Err(reason) = verdict {
                            abort_all(pending).await;
                            warn!(object = %name, attempt, file_id = %file_id, %reason, "file is not the export it should be; nothing published");
                            rejected = format!("file {file_id}: {reason}");
                            continue 'attempts;
                        }
                    }
                    Err(RelayError::Source(ZuoraError::FilePurged { .. })) => {
                        abort_all(pending).await;
                        let age = self.clock.now() - executed_at;
                        if age < PURGED_AFTER {
                            return Err(BatchFailure::Fatal(format!(
                                "{name}: file {file_id} not found (404) {} h after its job ran; Zuora keeps files about 72 h, so the download path is wrong (zuora.file_path?)",
                                age.num_hours()
                            )));
                        }
                        warn!(object = %name, file_id = %file_id, "file purged by Zuora");
                        return Err(BatchFailure::Purged { object: object.name.clone(), full });
                    }
                    Err(RelayError::Source(ZuoraError::FileTooLarge { limit, .. })) => {
                        abort_all(pending).await;
                        return Err(BatchFailure::Fatal(format!(
                            "{name}: file {file_id} (segment {segment}) is over Zuora's {limit} download limit; export the object in smaller windows"
                        )));
                    }
                    Err(RelayError::Store(e)) if e.is_permanent() => {
                        abort_all(pending).await;
                        return Err(BatchFailure::Fatal(format!("{name}: {e}")));
                    }
                    Err(e @ RelayError::BadGzip(_)) => {
                        // Its upload was aborted; like a file that fails its checks, it is downloaded again.
                        abort_all(pending).await;
                        warn!(object = %name, attempt, file_id = %file_id, error = %e, "file is not the export it should be; nothing published");
                        rejected = format!("file {file_id}: {e}");
                        continue 'attempts;
                    }
                    Err(e) => {
                        broken = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = broken {
                abort_all(pending).await;
                warn!(object = %name, attempt, error = %e, "file transfer broke; starting it again");
                if attempt == self.settings.file_attempts {
                    return Err(e.into());
                }
                continue;
            }
            let counted: u64 = pending.iter().map(|(p, _)| p.counter.data_records()).sum();
            if announced + counted != expected {
                abort_all(pending).await;
                warn!(object = %name, attempt, counted = announced + counted, expected, "record count differs from Zuora's; nothing published");
                rejected = format!("{} records counted, Zuora's recordCount is {expected}", announced + counted);
                continue;
            }
            let batch = BatchToPublish {
                job_message,
                job,
                object,
                batch_id: &batch_id,
                segments,
                full,
                executed_at,
                found_completed,
                relay: &relay,
            };
            let mut files = pending.into_iter().zip(&todo);
            while let Some(((upload, elapsed), (segment, file_id, key, metadata_key))) = files.next() {
                let file = FileToPublish { segment: *segment, file_id, key, metadata_key };
                if let Err(e) = self.publish_file(&batch, &file, upload, elapsed).await {
                    // The segments after this one are uploaded but not completed: abort them now, not at shutdown
                    // (the next delivery uploads them again).
                    abort_all(files.map(|(pending, _)| pending).collect()).await;
                    return Err(e.into());
                }
            }
            self.sync_legacy_key(object).await?;
            return Ok(file_ids.len());
        }
        Err(BatchFailure::Fatal(format!(
            "{name}: verification failed in {} attempts ({rejected}); nothing published",
            self.settings.file_attempts
        )))
    }

    /// The file relayed into a pending upload, and the content type Zuora served it with. A transfer that stalls
    /// (nothing read from Zuora for `file_stall_secs`) or that is slower on the whole than its allowance
    /// (`file_deadline_secs` plus the time its bytes take at `file_min_kib_per_sec`) is abandoned like a broken one:
    /// a slow file that keeps coming completes, a hung one does not hold its job for ever.
    async fn relay_file(
        &self,
        object: &ObjectSpec,
        file_id: &str,
        key: &str,
        relay: &RelaySettings,
    ) -> Result<(PendingUpload, Option<String>), RelayError> {
        let read = Arc::new(AtomicU64::new(0));
        tokio::select! {
            transferred = self.transfer_file(object, file_id, key, relay, read.clone()) => transferred,
            abandoned = self.watch_transfer(&read) => {
                // The abandoned relay's upload was handed to the tracker when its future was dropped.
                self.uploads.abort_orphans().await;
                Err(abandoned)
            }
        }
    }

    /// Resolves when a transfer that has read `read` bytes so far must be abandoned, with the reason.
    async fn watch_transfer(&self, read: &AtomicU64) -> RelayError {
        let settings = &self.settings;
        let stall = Duration::from_secs(settings.file_stall_secs);
        let min_bytes_per_sec = settings.file_min_kib_per_sec as f64 * 1024.0;
        let started = tokio::time::Instant::now();
        let (mut seen, mut moved) = (0, started);
        loop {
            tokio::time::sleep(WATCH_EVERY.min(stall)).await;
            let now = tokio::time::Instant::now();
            let bytes = read.load(Ordering::Relaxed);
            if bytes != seen {
                (seen, moved) = (bytes, now);
            }
            if now - moved >= stall {
                return RelayError::Stalled(stall);
            }
            let allowed = Duration::from_secs(settings.file_deadline_secs)
                + Duration::from_secs_f64(bytes as f64 / min_bytes_per_sec);
            if now - started >= allowed {
                return RelayError::Deadline(allowed);
            }
        }
    }

    async fn transfer_file(
        &self,
        object: &ObjectSpec,
        file_id: &str,
        key: &str,
        settings: &RelaySettings,
        read: Arc<AtomicU64>,
    ) -> Result<(PendingUpload, Option<String>), RelayError> {
        let stream = self.zuora.download(file_id).await?;
        let length = stream.content_length;
        let content_type = stream.content_type.clone();
        let stream = stream.inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                read.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        });
        let destination = Destination {
            bucket: object.target.bucket.clone(),
            key: key.to_owned(),
            content_type: settings.compression.content_type().to_owned(),
        };
        let upload = relay(stream, length, &self.store, &destination, &self.pool, settings, &self.uploads).await?;
        Ok((upload, content_type))
    }

    /// How a job's files are relayed: a gzip job's (`format: gzip`) are decompressed to be counted, and stored as
    /// they came or decompressed, as `consumer.gzip_downloads` says.
    fn relay_for(&self, job: &Job) -> RelaySettings {
        if !job.is_gzip() {
            return self.relay.clone();
        }
        let compression = match self.settings.gzip_downloads {
            GzipDownloads::Keep => Compression::GzipAsSent,
            GzipDownloads::Decompress => self.relay.compression,
        };
        RelaySettings { gzip_source: true, compression, ..self.relay.clone() }
    }

    /// Keeps the object's fixed legacy key (if it has one) a copy of its latest published increment of the session,
    /// as the old export's fixed key was (a backfill or a full export's window ending later does not replace it): a
    /// server-side copy of a single file; a segmented first load's segments joined into one file under one header.
    ///
    /// Run once a batch's files are announced, on a redelivery too (a crash or a failed copy before is mended). Consumers
    /// publishing at once may each copy what was latest when they looked, so each looks again after copying and
    /// stops only when the latest is what it copied last: the last copy made is then of the latest file, since a
    /// file published after that look is copied by its own publisher, later.
    async fn sync_legacy_key(&self, object: &ObjectSpec) -> Result<(), WorkError> {
        let Some(legacy) = &object.target.legacy_key else { return Ok(()) };
        let marks = self.ledger.marks();
        let mut copied: Option<String> = None;
        while let Some(latest) = marks.latest_increment(&object.name).await? {
            if copied.as_ref() == Some(&latest.key) {
                break;
            }
            let described = if latest.segments == 1 {
                let described = self.published_metadata(object, &latest.bucket, &latest.key).await?;
                if described.bytes <= COPY_OBJECT_LIMIT {
                    self.store.copy(&latest.bucket, &latest.key, legacy).await?;
                    described
                } else {
                    // Larger than one CopyObject takes (a gzip download stored decompressed): streamed instead.
                    self.join_segments(object, std::slice::from_ref(&latest), legacy).await?
                }
            } else {
                let segments = marks.segments_of(&latest).await?;
                if segments.len() < latest.segments as usize {
                    // Its other segments are still being published; their publisher joins them.
                    break;
                }
                self.join_segments(object, &segments, legacy).await?
            };
            // The old layout's metadata, after the CSV it describes (as the old export wrote them).
            if let Some(metadata_at) = object.target.legacy_metadata_key() {
                self.store.put(&object.target.bucket, &metadata_at, described.old_metadata_json().into()).await?;
            }
            info!(object = %object.name, legacy_key = %legacy, source = %latest.key, segments = latest.segments, "legacy key updated");
            copied = Some(latest.key);
        }
        Ok(())
    }

    /// The completion message a published file's metadata JSON was written from.
    async fn published_metadata(
        &self,
        object: &ObjectSpec,
        bucket: &str,
        key: &str,
    ) -> Result<CompletionMessage, WorkError> {
        let metadata_key = object.target.metadata_key(key);
        let corrupt = |detail: String| LedgerError::Corrupt { key: metadata_key.clone(), detail };
        let Some(metadata) = self.store.get(bucket, &metadata_key).await? else {
            return Err(corrupt("a published mark names a file without metadata".to_owned()).into());
        };
        Ok(CompletionMessage::from_metadata_json(&metadata).map_err(|e| corrupt(e.to_string()))?)
    }

    /// Writes a segmented file's segments, in order, as one CSV at `to`: the first whole, the others without their
    /// header line, streamed through the part pool and counted on the way. Returns the first segment's metadata
    /// with the whole file's record count.
    async fn join_segments(
        &self,
        object: &ObjectSpec,
        segments: &[PublishedMark],
        to: &str,
    ) -> Result<CompletionMessage, WorkError> {
        let mut described: Option<CompletionMessage> = None;
        let mut records = 0;
        let mut sources = Vec::with_capacity(segments.len());
        for segment in segments {
            let completion = self.published_metadata(object, &segment.bucket, &segment.key).await?;
            records += completion.record_count;
            described.get_or_insert(completion);
            sources.push((segment.bucket.clone(), segment.key.clone(), segment.segment > 0));
        }
        let store = self.store.clone();
        let joined = futures::stream::iter(sources)
            .then(move |(bucket, key, without_header)| {
                let store = store.clone();
                async move {
                    let Some(chunks) = store.get_stream(&bucket, &key).await? else {
                        return Err(StoreError::transient("GetObject", &bucket, &key, "a published segment is gone"));
                    };
                    Ok(if without_header { after_first_line(chunks) } else { chunks })
                }
            })
            .try_flatten()
            .boxed();
        let destination =
            Destination { bucket: object.target.bucket.clone(), key: to.to_owned(), content_type: "text/csv".into() };
        let plain = RelaySettings { compression: Compression::None, gzip_source: false, ..self.relay.clone() };
        let upload = relay(joined, None, &self.store, &destination, &self.pool, &plain, &self.uploads).await?;
        if upload.counter.data_records() != records {
            let counted = upload.counter.data_records();
            abort_all(vec![(upload, Duration::ZERO)]).await;
            let detail = format!("the segments hold {counted} records, their metadata {records}");
            return Err(LedgerError::Corrupt { key: to.to_owned(), detail }.into());
        }
        upload.complete().await?;
        #[allow(clippy::expect_used)]
        let first = described.expect("a segmented file has segments");
        Ok(CompletionMessage { record_count: records, ..first })
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

fn name_of(batch: &Batch) -> String {
    batch.name.clone().unwrap_or_else(|| "unnamed batch".to_owned())
}

/// Aborts uploads that will not be completed (their parts are released now, not by the lifecycle rule).
pub(crate) async fn abort_all(pending: Vec<(PendingUpload, Duration)>) {
    for (upload, _) in pending {
        if let Err(e) = upload.abort().await {
            warn!(error = %e, "could not abort a multipart upload; the bucket's lifecycle rule will");
        }
    }
}

/// A CSV file's chunks without its first line (a segment's header, the first segment's already written).
fn after_first_line(chunks: ByteChunks) -> ByteChunks {
    let mut in_header = true;
    chunks
        .map_ok(move |mut chunk| {
            if in_header {
                match chunk.iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        in_header = false;
                        chunk = chunk.split_off(end + 1);
                    }
                    None => chunk.clear(),
                }
            }
            chunk
        })
        .try_filter(|chunk| std::future::ready(!chunk.is_empty()))
        .boxed()
}
