//! Publishing a verified file: the order of its steps (CSV, metadata, completion message, mark), the messages
//! that describe it, and what is logged and measured of it.

use crate::error::WorkError;
use crate::relay::{PendingUpload, Published, RelaySettings};
use chrono::{DateTime, Utc};
use common::catalogue::ObjectSpec;
use common::clock::Clock;
use common::marks::{Marks, PublishedMark};
use common::messages::{Checksum, CompletionMessage, FileSchema, JobKind, JobMessage, MESSAGE_VERSION};
use common::services::CompletionQueues;
use common::store::ChecksumAlgorithm;
use common::store::ObjectStore;
use common::zuora::Job;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info};

/// What publishing a file writes to: the lake's store and queues, and the published marks.
pub(crate) struct Publisher {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) completions: CompletionQueues,
    pub(crate) marks: Marks,
    pub(crate) clock: Clock,
    /// The algorithm of the stored files' checksums (`consumer.checksum`).
    pub(crate) checksum: ChecksumAlgorithm,
    /// Whether CloudWatch embedded metrics are printed (`consumer.emf_metrics`).
    pub(crate) emf_metrics: bool,
}

/// What every file of a batch shares.
pub(crate) struct BatchToPublish<'a> {
    pub(crate) job_message: &'a JobMessage,
    pub(crate) job: &'a Job,
    pub(crate) object: &'a ObjectSpec,
    pub(crate) batch_id: &'a str,
    pub(crate) segments: u32,
    pub(crate) full: bool,
    pub(crate) executed_at: DateTime<Utc>,
    /// When the job was found completed: its wait at Zuora ended there.
    pub(crate) found_completed: DateTime<Utc>,
    /// How its files were relayed (what the stored files are).
    pub(crate) relay: &'a RelaySettings,
}

/// One file of a batch: its segment, Zuora's id for it, and where it and its metadata JSON go.
pub(crate) struct FileToPublish {
    pub(crate) segment: u32,
    pub(crate) file_id: String,
    pub(crate) key: String,
    pub(crate) metadata_key: String,
}

impl BatchToPublish<'_> {
    /// The completion message of a file of this batch, once stored.
    fn completion(
        &self,
        file: &FileToPublish,
        records: u64,
        published: &Published,
        checksum: ChecksumAlgorithm,
        schema: FileSchema,
    ) -> CompletionMessage {
        CompletionMessage {
            version: MESSAGE_VERSION,
            job_id: self.job.id.clone(),
            batch_id: self.batch_id.to_owned(),
            file_id: file.file_id.clone(),
            object: self.object.name.clone(),
            segment: file.segment,
            segments: self.segments,
            bucket: self.object.target.bucket.clone(),
            key: file.key.clone(),
            metadata_key: file.metadata_key.clone(),
            record_count: records,
            bytes: published.bytes,
            full: self.full,
            window: self.job_message.window,
            executed_at: self.executed_at,
            checksum: Checksum { algorithm: checksum.name().to_owned(), value: published.checksum.clone() },
            compression: self.relay.compression.name().to_owned(),
            kind: Some(self.job_message.kind),
            schema: Some(schema),
        }
    }
}

impl Publisher {
    /// Publishes one verified file, described by `schema`. The order is what makes a crash at any step harmless
    /// (docs/architecture.md, "Guarantees"): a redelivery of the job finds whatever the crash left and goes on from
    /// there.
    pub(crate) async fn publish_file(
        &self,
        batch: &BatchToPublish<'_>,
        file: &FileToPublish,
        upload: PendingUpload,
        relayed_in: Duration,
        schema: FileSchema,
    ) -> Result<(), WorkError> {
        let (object, records) = (batch.object, upload.counter.data_records());
        let completing = Instant::now();
        // 1. The CSV becomes visible, whole, at its key (before this, nothing of it is).
        let published = upload.complete().await?;
        let completion = batch.completion(file, records, &published, self.checksum, schema);
        // 2. Its metadata JSON: from here on a redelivery announces the file again instead of uploading it.
        let metadata = completion.metadata_json(self.clock.now());
        self.store.put(&object.target.bucket, &file.metadata_key, metadata.into()).await?;
        // 3. The completion message, then 4. the published mark (`announce`): the lake hears of the file at least
        // once, and the mark (status, the legacy key) never runs ahead of what the lake was told.
        self.announce(&completion, batch.job_message.kind).await?;
        self.report(batch, &completion, &published, relayed_in + completing.elapsed());
        Ok(())
    }

    /// The published file's log line and metrics.
    fn report(
        &self,
        batch: &BatchToPublish<'_>,
        completion: &CompletionMessage,
        published: &Published,
        took: Duration,
    ) {
        let (job_message, now) = (batch.job_message, self.clock.now());
        let seconds = |d: chrono::TimeDelta| d.num_milliseconds() as f64 / 1e3;
        let measured = common::metrics::PublishedFile {
            object: &completion.object,
            records: completion.record_count,
            bytes: published.bytes,
            relay_seconds: took.as_secs_f64(),
            zuora_wait_seconds: seconds(batch.found_completed - job_message.submitted_at),
            lag_seconds: seconds(now - job_message.window.to),
        };
        if self.emf_metrics {
            measured.emit(now);
        }
        if completion.full && job_message.expects_changes_of(&completion.object) {
            // Published all the same (nothing is lost: it is the whole live table), and said loudly: the lake must
            // replace the object's table with it, and someone should know why Zuora started the session again.
            error!(object = %completion.object, job_id = %completion.job_id, window_from = ?job_message.window.from,
                   location = %format!("s3://{}/{}", completion.bucket, completion.key),
                   "Zuora answered an increment with a full load (the session started again: 180 days unused, or the \
                    query or its deleted spec changed); published with full: true, which the lake must apply as a \
                    replacement of the object's table");
            if self.emf_metrics {
                println!("{}", common::metrics::emf_line(now, &[], &[("UnexpectedFullLoads", "Count", 1.0)]));
            }
        }
        let throughput = published.bytes as f64 / took.as_secs_f64().max(1e-6) / 1e6;
        info!(object = %completion.object, record_count = completion.record_count, window_from = ?job_message.window.from,
              window_to = %job_message.window.to, location = %format!("s3://{}/{}", completion.bucket, completion.key),
              job_id = %completion.job_id, file_id = %completion.file_id, batch_id = %completion.batch_id,
              bytes = published.bytes, parts = published.parts, throughput_mb_s = format!("{throughput:.1}"), "published");
    }

    /// Completion message on the lake queue, and the file's published mark (`kind`: the export it came from).
    /// Idempotent: same deduplication id and mark each time.
    pub(crate) async fn announce(&self, completion: &CompletionMessage, kind: JobKind) -> Result<(), WorkError> {
        self.completions.announce(completion).await?;
        let mark = PublishedMark {
            object: completion.object.clone(),
            job_id: completion.job_id.clone(),
            window: completion.window,
            executed_at: completion.executed_at,
            published_at: self.clock.now(),
            bucket: completion.bucket.clone(),
            key: completion.key.clone(),
            segment: completion.segment,
            segments: completion.segments,
            kind: Some(kind),
        };
        Ok(self.marks.record(&mark).await?)
    }
}
