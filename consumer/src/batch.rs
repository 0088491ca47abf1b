//! One batch of a finished job, through its states: [`Planned`] (its object, what Zuora says of it, its files not
//! yet published; those published before are announced again) -> [`Verified`] (every file relayed into a pending
//! upload, checked, and the records counted equal to Zuora's count) -> published (each file completed, described
//! and announced by the [`Publisher`]) -> the object's legacy key kept. Each step returns the next state or a
//! [`Failure`]; [`Batches::export`] classifies the failures ([`classify`]): the attempts loop is what it looks like.

use crate::error::{Attempt, Decision, Failure, WorkError, classify};
use crate::legacy::LegacyKeys;
use crate::publish::{BatchToPublish, FileToPublish, Publisher};
use crate::relay::compress::Compression;
use crate::relay::pool::PartPool;
use crate::relay::{Destination, PendingUpload, RelayError, RelaySettings, UploadTracker, relay};
use crate::schema::Schemas;
use crate::verify;
use chrono::{DateTime, Utc};
use common::catalogue::{Catalogue, ObjectSpec};
use common::clock::Clock;
use common::config::{ConsumerSettings, GzipDownloads};
use common::messages::{CompletionMessage, JobMessage};
use common::store::ObjectStore;
use common::zuora::{Batch, Job, ZuoraClient, ZuoraError};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::warn;

/// How often a transfer's progress is looked at.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// What exporting a batch's files talks to.
pub(crate) struct Batches {
    pub(crate) zuora: ZuoraClient,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) catalogue: Catalogue,
    /// Part buffers, shared by every job of the process.
    pub(crate) pool: Arc<PartPool>,
    /// How files are cut into parts.
    pub(crate) relay: RelaySettings,
    /// Uploads abandoned by cancelled work, aborted at shutdown.
    pub(crate) uploads: Arc<UploadTracker>,
    pub(crate) settings: ConsumerSettings,
    pub(crate) clock: Clock,
    /// Zuora's descriptions of the objects files name, for their schema.
    pub(crate) schemas: Schemas,
    pub(crate) publisher: Publisher,
    pub(crate) legacy: LegacyKeys,
}

/// A job Zuora completed, as every batch of it shares it.
pub(crate) struct FinishedJob<'a> {
    pub(crate) message: &'a JobMessage,
    pub(crate) job: &'a Job,
    /// When the job was found completed: its wait at Zuora ended there, for every batch alike.
    pub(crate) found_completed: DateTime<Utc>,
}

/// A batch planned: what it is, and which of its files are still to publish.
pub(crate) struct Planned<'a> {
    object: &'a ObjectSpec,
    batch_id: String,
    /// Zuora's `recordCount`.
    expected: u64,
    segments: u32,
    full: bool,
    executed_at: DateTime<Utc>,
    /// How its files are relayed (what the stored files are).
    relay: RelaySettings,
    /// The records of its files published before (announced again).
    announced: u64,
    todo: Vec<FileToPublish>,
}

/// A file relayed into a pending upload.
struct Relayed {
    upload: PendingUpload,
    took: Duration,
}

/// Every file still to publish relayed and checked, in segment order, and the batch's records equal to Zuora's.
pub(crate) struct Verified {
    files: Vec<Relayed>,
}

impl Batches {
    /// Exports one succeeded batch: its files published (or announced again), its legacy key kept. Returns how
    /// many files it has, or what follows its failure.
    pub(crate) async fn export(&self, job: &FinishedJob<'_>, batch: &Batch) -> Result<usize, Decision> {
        let planned = self.plan(job, batch).await.map_err(|f| classify(f, Attempt::ONLY))?;
        if !planned.todo.is_empty() {
            let mut attempt = Attempt::first(self.settings.file_attempts);
            let verified = loop {
                match self.relay_files(&planned).await {
                    Ok(verified) => break verified,
                    Err(failure) => match classify(failure, attempt) {
                        Decision::RetryNow(reason) => {
                            warn!(object = %planned.object.name, attempt = attempt.number, %reason,
                                  "nothing published; relaying the batch's files again");
                            attempt = attempt.next();
                        }
                        decision => return Err(decision),
                    },
                }
            };
            self.publish(job, &planned, verified).await.map_err(|f| classify(f, Attempt::ONLY))?;
        }
        self.legacy.sync(planned.object).await.map_err(|e| classify(e.into(), Attempt::ONLY))?;
        Ok(planned.segments as usize)
    }

    /// The batch checked (an object of the catalogue, ids that are Zuora's, a record count to verify against) and
    /// its files' keys; a file whose metadata JSON exists was published before, and is announced again.
    async fn plan<'a>(&'a self, job: &FinishedJob<'_>, batch: &Batch) -> Result<Planned<'a>, Failure> {
        let name = batch.name.as_deref().unwrap_or_default();
        let Some(object) = self.catalogue.objects.iter().find(|o| o.name.eq_ignore_ascii_case(name)) else {
            return Err(Failure::Invalid("not in the catalogue".to_owned()));
        };
        let Some(expected) = batch.record_count else {
            return Err(Failure::Invalid("Zuora gave no recordCount to verify against".to_owned()));
        };
        // The batch id goes into the file's key: it must be Zuora's, not empty or a path.
        let Some(batch_id) = batch.batch_id.clone().filter(|id| common::zuora::is_zuora_id(id)) else {
            return Err(Failure::Invalid(format!("batch id {:?} is not a Zuora id", batch.batch_id)));
        };
        let file_ids = batch.file_ids();
        if file_ids.is_empty() {
            return Err(Failure::Invalid("completed with neither a fileId nor segments".to_owned()));
        }
        if let Some(bad) = file_ids.iter().find(|id| !common::zuora::is_zuora_id(id)) {
            return Err(Failure::Invalid(format!("file id {bad:?} is not a Zuora id")));
        }
        let executed_at = job
            .job
            .start_time
            .as_ref()
            .and_then(|t| t.to_utc(self.zuora.config().data_center))
            .unwrap_or(job.message.submitted_at);
        let mut planned = Planned {
            object,
            batch_id,
            expected,
            segments: file_ids.len() as u32,
            full: batch.full.unwrap_or(job.message.window.from.is_none()),
            executed_at,
            relay: self.relay_for(job.job),
            announced: 0,
            todo: Vec::new(),
        };
        for (segment, file_id) in file_ids.iter().enumerate() {
            let file = planned.file(job.job, segment as u32, file_id);
            match self.store.get(&object.target.bucket, &file.metadata_key).await? {
                Some(metadata) => {
                    planned.announced += self.announce_again(job.message, &planned, &file, &metadata).await?
                }
                None => planned.todo.push(file),
            }
        }
        Ok(planned)
    }

    /// Announces again a file published before, from its metadata JSON; returns its record count.
    async fn announce_again(
        &self,
        job: &JobMessage,
        planned: &Planned<'_>,
        file: &FileToPublish,
        metadata: &[u8],
    ) -> Result<u64, Failure> {
        let metadata_key = &file.metadata_key;
        let completion = CompletionMessage::from_metadata_json(metadata)
            .map_err(|e| Failure::Invalid(format!("metadata {metadata_key} unreadable: {e}")))?;
        // Only the file this consumer computes is announced: metadata naming another bucket or key (written by
        // hand, or by anyone else who can write to the bucket) is not trusted.
        let bucket = &planned.object.target.bucket;
        let plain = file.key.strip_suffix(planned.relay.compression.extension()).unwrap_or(&file.key);
        let ours = [plain.to_owned(), format!("{plain}.gz"), format!("{plain}.zst")];
        if &completion.bucket != bucket || !ours.contains(&completion.key) {
            return Err(Failure::Invalid(format!(
                "metadata {metadata_key} names s3://{}/{}, not the file it describes (s3://{bucket}/{})",
                completion.bucket, completion.key, file.key
            )));
        }
        self.publisher.announce(&completion, job.kind).await?;
        Ok(completion.record_count)
    }

    /// Relays every file still to publish and checks it; then the batch's records against Zuora's count. On a
    /// failure, nothing of it stays: every upload of the attempt is aborted.
    async fn relay_files(&self, planned: &Planned<'_>) -> Result<Verified, Failure> {
        let mut files = Vec::with_capacity(planned.todo.len());
        for file in &planned.todo {
            match self.relay_checked(planned, file).await {
                Ok(relayed) => files.push(relayed),
                Err(failure) => {
                    abort_all(files).await;
                    return Err(failure);
                }
            }
        }
        let counted = planned.announced + files.iter().map(|f| f.upload.counter.data_records()).sum::<u64>();
        if counted != planned.expected {
            abort_all(files).await;
            return Err(Failure::Rejected(format!(
                "{counted} records counted, Zuora's recordCount is {}",
                planned.expected
            )));
        }
        Ok(Verified { files })
    }

    /// One file relayed into a pending upload, and checked (`verify::check_file`).
    async fn relay_checked(&self, planned: &Planned<'_>, file: &FileToPublish) -> Result<Relayed, Failure> {
        let started = Instant::now();
        let (upload, content_type) = match self.relay_file(planned.object, file, &planned.relay).await {
            Ok(relayed) => relayed,
            Err(e) => return Err(self.relay_failure(planned, file, e)),
        };
        let sent = verify::Sent { content_type: content_type.as_deref(), gzip: planned.relay.gzip_source };
        if let Err(reason) = verify::check_file(planned.object, sent, &upload.counter) {
            upload.abandon().await;
            return Err(Failure::Rejected(format!("file {}: {reason}", file.file_id)));
        }
        Ok(Relayed { upload, took: started.elapsed() })
    }

    /// What a relay's error says of the file.
    fn relay_failure(&self, planned: &Planned<'_>, file: &FileToPublish, e: RelayError) -> Failure {
        let file_id = file.file_id.clone();
        match e {
            RelayError::Source(ZuoraError::FilePurged { .. }) => Failure::NotFound {
                object: planned.object.name.clone(),
                full: planned.full,
                file_id,
                age: self.clock.now() - planned.executed_at,
            },
            RelayError::Source(ZuoraError::FileTooLarge { limit, .. }) => Failure::Invalid(format!(
                "file {file_id} (segment {}) is over Zuora's {limit} download limit; export the object in smaller windows",
                file.segment
            )),
            // Its upload was aborted; like a file that fails its checks, it is downloaded again.
            e @ RelayError::BadGzip(_) => Failure::Rejected(format!("file {file_id}: {e}")),
            e => Failure::Call(WorkError::Relay(e)),
        }
    }

    /// Publishes the verified files in segment order, each described by its schema. A failure aborts the uploads
    /// after it (the next delivery uploads them again).
    async fn publish(&self, job: &FinishedJob<'_>, planned: &Planned<'_>, verified: Verified) -> Result<(), Failure> {
        let batch = BatchToPublish {
            job_message: job.message,
            job: job.job,
            object: planned.object,
            batch_id: &planned.batch_id,
            segments: planned.segments,
            full: planned.full,
            executed_at: planned.executed_at,
            found_completed: job.found_completed,
            relay: &planned.relay,
        };
        let mut files = verified.files.into_iter().zip(&planned.todo);
        while let Some((relayed, file)) = files.next() {
            let header = relayed.upload.counter.header();
            let published = match self.schemas.of_file(&self.zuora, planned.object, &header).await {
                Ok(schema) => self.publisher.publish_file(&batch, file, relayed.upload, relayed.took, schema).await,
                Err(e) => {
                    relayed.upload.abandon().await;
                    Err(e.into())
                }
            };
            if let Err(e) = published {
                abort_all(files.map(|(relayed, _)| relayed).collect()).await;
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// The file relayed into a pending upload, and the content type Zuora served it with. A transfer that stalls
    /// (nothing read from Zuora for `file_stall_secs`) or that is slower on the whole than its allowance
    /// (`file_deadline_secs` plus the time its bytes take at `file_min_kib_per_sec`) is abandoned like a broken one:
    /// a slow file that keeps coming completes, a hung one does not hold its job for ever.
    async fn relay_file(
        &self,
        object: &ObjectSpec,
        file: &FileToPublish,
        relay: &RelaySettings,
    ) -> Result<(PendingUpload, Option<String>), RelayError> {
        let read = Arc::new(AtomicU64::new(0));
        tokio::select! {
            transferred = self.transfer_file(object, file, relay, read.clone()) => transferred,
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
        file: &FileToPublish,
        settings: &RelaySettings,
        read: Arc<AtomicU64>,
    ) -> Result<(PendingUpload, Option<String>), RelayError> {
        let stream = self.zuora.download(&file.file_id).await?;
        let length = stream.content_length;
        let content_type = stream.content_type.clone();
        let stream = stream.inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                read.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        });
        let destination = Destination {
            bucket: object.target.bucket.clone(),
            key: file.key.clone(),
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
}

impl Planned<'_> {
    /// Segment `segment` of the batch (Zuora's file `file_id`), and where it and its metadata go.
    fn file(&self, job: &Job, segment: u32, file_id: &str) -> FileToPublish {
        let target = &self.object.target;
        let plain = target.key_for(&self.object.name, self.executed_at.date_naive(), &job.id, &self.batch_id, segment);
        FileToPublish {
            segment,
            file_id: file_id.to_owned(),
            key: format!("{plain}{}", self.relay.compression.extension()),
            metadata_key: target.metadata_key(&plain),
        }
    }
}

/// Aborts uploads that will not be completed.
async fn abort_all(files: Vec<Relayed>) {
    for file in files {
        file.upload.abandon().await;
    }
}
