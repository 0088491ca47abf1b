//! The fixed legacy keys: an object's key that the old export overwrote with each increment, kept a copy of the
//! latest increment the consumers published ([`LegacyKeys::sync`]).

use crate::error::WorkError;
use crate::relay::compress::Compression;
use crate::relay::pool::PartPool;
use crate::relay::{Destination, RelaySettings, UploadTracker, relay};
use common::catalogue::ObjectSpec;
use common::ledger::LedgerError;
use common::marks::{Marks, PublishedMark};
use common::messages::CompletionMessage;
use common::store::{ByteChunks, ObjectStore, StoreError};
use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;
use tracing::info;

/// S3's CopyObject copies objects of at most 5 GB; a larger file is streamed to the fixed key instead.
const COPY_OBJECT_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

/// What keeping the legacy keys reads and writes.
pub(crate) struct LegacyKeys {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) marks: Marks,
    pub(crate) pool: Arc<PartPool>,
    /// The relay's settings, for joining segments (stored as plain CSV whatever the files' compression).
    pub(crate) relay: RelaySettings,
    pub(crate) uploads: Arc<UploadTracker>,
}

impl LegacyKeys {
    /// Keeps the object's fixed legacy key (if it has one) a copy of its latest published increment of the session,
    /// as the old export's fixed key was (a backfill or a full export's window ending later does not replace it): a
    /// server-side copy of a single file; a segmented first load's segments joined into one file under one header.
    ///
    /// Run once a batch's files are announced, on a redelivery too (a crash or a failed copy before is mended). Consumers
    /// publishing at once may each copy what was latest when they looked, so each looks again after copying and
    /// stops only when the latest is what it copied last: the last copy made is then of the latest file, since a
    /// file published after that look is copied by its own publisher, later.
    pub(crate) async fn sync(&self, object: &ObjectSpec) -> Result<(), WorkError> {
        let Some(legacy) = &object.target.legacy_key else { return Ok(()) };
        let marks = &self.marks;
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
            upload.abandon().await;
            let detail = format!("the segments hold {counted} records, their metadata {records}");
            return Err(LedgerError::Corrupt { key: to.to_owned(), detail }.into());
        }
        upload.complete().await?;
        #[allow(clippy::expect_used)]
        let first = described.expect("a segmented file has segments");
        Ok(CompletionMessage { record_count: records, ..first })
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
