//! The streaming relay: a result file goes from Zuora's HTTP body into an S3 multipart upload, counted on the
//! way, with memory bounded by the part pool whatever the file's size.
//!
//! GET body chunks -> record counter (quote-aware, on the bytes as they pass) -> the current part's buffer ->
//! when full, the part is uploaded by its own task while the next one fills. A part's room is taken from the pool
//! before it is filled, so when every part is in flight the download waits. Nothing is published here: the caller
//! completes the upload only after checking the count, or aborts it.

pub mod compress;
pub mod part_size;
pub mod pool;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::{ByteStream, SdkBody};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::csv_count::RecordCounter;
use common::zuora::ZuoraError;
use compress::Compression;
use crc_fast::{CrcAlgorithm, Digest};
use futures::{Stream, StreamExt};
use part_size::part_size_for;
use pool::PartPool;
use std::sync::Arc;
use tokio::task::JoinSet;

/// How parts are cut and checked.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// First (and smallest) part size, bytes.
    pub part_size: u64,
    /// Largest part size an unknown-length stream grows to, bytes.
    pub max_part_size: u64,
    /// Checksum set on create, every part and complete.
    pub checksum: ChecksumAlgorithm,
    /// How stored files are compressed (chunks of `part_size` raw bytes become independent members).
    pub compression: Compression,
}

/// A relay that failed. The multipart upload, if one was started, has been aborted.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading the file from Zuora failed (retryable: start the file again).
    #[error("reading the file: {0}")]
    Source(#[from] ZuoraError),
    /// An S3 call failed.
    #[error("{operation} s3://{bucket}/{key}: {message}")]
    S3 {
        /// The call.
        operation: &'static str,
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// What S3 said.
        message: String,
    },
}

/// Where an upload goes.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Content type of the object.
    pub content_type: String,
}

/// Multipart uploads whose work was abandoned (a task cancelled at shutdown) without completing or aborting them.
/// The service aborts them before the process exits; the bucket's lifecycle rule is the backstop for a kill.
#[derive(Default)]
pub struct UploadTracker {
    orphans: std::sync::Mutex<Vec<(Client, Destination, String)>>,
}

impl UploadTracker {
    /// Aborts every abandoned upload; returns how many.
    pub async fn abort_orphans(&self) -> usize {
        let orphans = std::mem::take(&mut *self.orphans.lock().unwrap_or_else(|e| e.into_inner()));
        for (client, destination, upload_id) in &orphans {
            if let Err(e) = abort(client, destination, upload_id).await {
                tracing::warn!(error = %e, "could not abort an abandoned upload; the lifecycle rule will");
            }
        }
        orphans.len()
    }
}

/// An upload in progress: if dropped before it is settled, it is handed to the tracker.
struct UploadGuard {
    tracker: Arc<UploadTracker>,
    client: Client,
    destination: Destination,
    upload_id: String,
    settled: bool,
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        if !self.settled {
            let orphan = (self.client.clone(), self.destination.clone(), self.upload_id.clone());
            self.tracker.orphans.lock().unwrap_or_else(|e| e.into_inner()).push(orphan);
        }
    }
}

/// Every part uploaded, nothing published yet: complete or abort.
#[must_use = "an upload left neither completed nor aborted keeps its parts (and their cost) in S3"]
pub struct PendingUpload {
    guard: UploadGuard,
    parts: Vec<CompletedPart>,
    /// Bytes uploaded.
    pub bytes: u64,
    /// What the counter saw.
    pub counter: RecordCounter,
    /// Full-object checksum computed on the way (base64, as S3 writes checksums).
    pub checksum_value: String,
}

/// A published object.
#[derive(Debug, Clone)]
pub struct Published {
    /// Bytes.
    pub bytes: u64,
    /// Parts.
    pub parts: usize,
    /// Full-object checksum of the stored bytes, computed while they streamed (base64, big-endian, as S3 writes
    /// them); each part was also checked by S3 against its own checksum on upload.
    pub checksum: String,
}

impl PendingUpload {
    /// Makes the object visible.
    pub async fn complete(mut self) -> Result<Published, RelayError> {
        let parts = self.parts.len();
        let g = &self.guard;
        let out = g
            .client
            .complete_multipart_upload()
            .bucket(&g.destination.bucket)
            .key(&g.destination.key)
            .upload_id(&g.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder().set_parts(Some(std::mem::take(&mut self.parts))).build(),
            )
            .send()
            .await;
        let result = match out {
            Ok(_) => Ok(Published { bytes: self.bytes, parts, checksum: std::mem::take(&mut self.checksum_value) }),
            Err(e) => {
                let error = s3_error("CompleteMultipartUpload", &g.destination, e);
                let _ = abort(&g.client, &g.destination, &g.upload_id).await;
                Err(error)
            }
        };
        self.guard.settled = true;
        result
    }

    /// Throws every part away.
    pub async fn abort(mut self) -> Result<(), RelayError> {
        let g = &self.guard;
        let result = abort(&g.client, &g.destination, &g.upload_id).await;
        self.guard.settled = true;
        result
    }
}

fn s3_error(operation: &'static str, destination: &Destination, err: impl std::error::Error) -> RelayError {
    RelayError::S3 {
        operation,
        bucket: destination.bucket.clone(),
        key: destination.key.clone(),
        message: DisplayErrorContext(err).to_string(),
    }
}

async fn abort(client: &Client, destination: &Destination, upload_id: &str) -> Result<(), RelayError> {
    client
        .abort_multipart_upload()
        .bucket(&destination.bucket)
        .key(&destination.key)
        .upload_id(upload_id)
        .send()
        .await
        .map_err(|e| s3_error("AbortMultipartUpload", destination, e))?;
    Ok(())
}

/// Streams `source` into a multipart upload at `destination`, counting records. On any failure the upload is
/// aborted before the error is returned.
pub async fn relay<S>(
    source: S,
    content_length: Option<u64>,
    client: &Client,
    destination: &Destination,
    pool: &Arc<PartPool>,
    settings: &RelaySettings,
    tracker: &Arc<UploadTracker>,
) -> Result<PendingUpload, RelayError>
where
    S: Stream<Item = Result<Bytes, ZuoraError>> + Unpin,
{
    let created = client
        .create_multipart_upload()
        .bucket(&destination.bucket)
        .key(&destination.key)
        .content_type(&destination.content_type)
        .checksum_algorithm(settings.checksum.clone())
        .send()
        .await
        .map_err(|e| s3_error("CreateMultipartUpload", destination, e))?;
    let upload_id = created.upload_id().unwrap_or_default().to_owned();
    let mut guard = UploadGuard {
        tracker: tracker.clone(),
        client: client.clone(),
        destination: destination.clone(),
        upload_id: upload_id.clone(),
        settled: false,
    };
    match upload_parts(source, content_length, client, destination, &upload_id, pool, settings).await {
        Ok((parts, bytes, counter, checksum_value)) => {
            Ok(PendingUpload { guard, parts, bytes, counter, checksum_value })
        }
        Err(error) => {
            let _ = abort(client, destination, &upload_id).await;
            guard.settled = true;
            Err(error)
        }
    }
}

async fn upload_parts<S>(
    source: S,
    content_length: Option<u64>,
    client: &Client,
    destination: &Destination,
    upload_id: &str,
    pool: &Arc<PartPool>,
    settings: &RelaySettings,
) -> Result<(Vec<CompletedPart>, u64, RecordCounter, String), RelayError>
where
    S: Stream<Item = Result<Bytes, ZuoraError>> + Unpin,
{
    let uploader = PartUploader {
        client: client.clone(),
        destination: destination.clone(),
        upload_id: upload_id.to_owned(),
        pool: pool.clone(),
        checksum: settings.checksum.clone(),
    };
    if settings.compression != Compression::None {
        return upload_compressed(source, &uploader, settings).await;
    }
    let mut input = Input::new(source);
    let (mut digest, width) = digest_for(&settings.checksum);
    let mut uploads = PartTasks::new();
    let mut parts = Vec::new();
    let mut total = 0u64;
    let cap = settings.max_part_size.min(pool.max_part());
    for index in 0u64.. {
        let size = part_size_for(index, settings.part_size, cap, content_length).min(pool.max_part());
        // Room first, then read: when every part is in flight, the download waits here.
        let mut slot = tokio::select! {
            slot = pool.slot(size) => slot,
            Some(done) = uploads.join_next(), if !uploads.is_empty() => {
                parts.push(joined(done, destination)?);
                pool.slot(size).await
            }
        };
        input.fill(&mut slot, size, Some(&mut digest)).await?;
        if slot.is_empty() && index > 0 {
            break;
        }
        total += uploader.spawn(&mut uploads, index as i32 + 1, slot);
        if input.is_done() {
            break;
        }
    }
    while let Some(done) = uploads.join_next().await {
        parts.push(joined(done, destination)?);
    }
    parts.sort_by_key(|p| p.part_number());
    Ok((parts, total, input.counter, encode_digest(&digest, width)))
}

/// The file being read: its stream, the bytes read past the last part, and the record count of everything read.
struct Input<S> {
    stream: S,
    carry: Option<Bytes>,
    ended: bool,
    counter: RecordCounter,
}

impl<S: Stream<Item = Result<Bytes, ZuoraError>> + Unpin> Input<S> {
    fn new(stream: S) -> Self {
        Self { stream, carry: None, ended: false, counter: RecordCounter::new() }
    }

    /// Reads into `slot` until it holds `size` bytes or the file ends; every byte read is counted (and fed to
    /// `digest`, when given) once.
    async fn fill(
        &mut self,
        slot: &mut pool::PartSlot,
        size: u64,
        mut digest: Option<&mut Digest>,
    ) -> Result<(), ZuoraError> {
        while (slot.len() as u64) < size && !self.ended {
            let mut chunk = match self.carry.take() {
                Some(chunk) => chunk,
                None => match self.stream.next().await {
                    Some(chunk) => {
                        let chunk = chunk?;
                        self.counter.feed(&chunk);
                        if let Some(digest) = digest.as_deref_mut() {
                            digest.update(&chunk);
                        }
                        chunk
                    }
                    None => {
                        self.ended = true;
                        break;
                    }
                },
            };
            let room = size as usize - slot.len();
            if chunk.len() > room {
                self.carry = Some(chunk.split_off(room));
            }
            slot.extend_from_slice(&chunk);
        }
        Ok(())
    }

    /// True once the whole file has been read into slots.
    fn is_done(&self) -> bool {
        self.ended && self.carry.is_none()
    }
}

/// A digest for the configured algorithm, and the width of its value in bytes.
fn digest_for(checksum: &ChecksumAlgorithm) -> (Digest, usize) {
    match checksum {
        ChecksumAlgorithm::Crc64Nvme => (Digest::new(CrcAlgorithm::Crc64Nvme), 8),
        _ => (Digest::new(CrcAlgorithm::Crc32Iscsi), 4),
    }
}

/// Base64 of the big-endian value, as S3 writes checksums.
fn encode_digest(digest: &Digest, width: usize) -> String {
    let value = digest.finalize().to_be_bytes();
    STANDARD.encode(&value[8 - width..])
}

/// Uploads parts of one multipart upload, each on its own task.
struct PartUploader {
    client: Client,
    destination: Destination,
    upload_id: String,
    pool: Arc<PartPool>,
    checksum: ChecksumAlgorithm,
}

type PartTasks = JoinSet<Result<CompletedPart, RelayError>>;

impl PartUploader {
    /// Starts uploading the slot's bytes as part `part_number`; the slot's chunks go back to the pool when it is
    /// done. Returns the part's size.
    fn spawn(&self, uploads: &mut PartTasks, part_number: i32, slot: pool::PartSlot) -> u64 {
        let part = slot.freeze();
        let size = part.len;
        let chunks = part.chunks.clone();
        // The body is the chunks in order, rebuilt from them if the SDK retries the request.
        let body = SdkBody::retryable(move || SdkBody::from_body_1_x(ChunkBody::new(chunks.clone())));
        let request = self
            .client
            .upload_part()
            .bucket(&self.destination.bucket)
            .key(&self.destination.key)
            .upload_id(&self.upload_id)
            .part_number(part_number)
            .content_length(size as i64)
            .checksum_algorithm(self.checksum.clone())
            .body(ByteStream::new(body));
        let (pool, destination) = (self.pool.clone(), self.destination.clone());
        uploads.spawn(async move {
            let out = request.send().await.map_err(|e| s3_error("UploadPart", &destination, e));
            part.release(&pool);
            let out = out?;
            Ok(CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .set_checksum_crc32_c(out.checksum_crc32_c().map(str::to_owned))
                .set_checksum_crc64_nvme(out.checksum_crc64_nvme().map(str::to_owned))
                .build())
        });
        size
    }
}

/// An HTTP body over a part's chunks, of exactly their length.
struct ChunkBody {
    chunks: std::collections::VecDeque<Bytes>,
    remaining: u64,
}

impl ChunkBody {
    fn new(chunks: Vec<Bytes>) -> Self {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        Self { chunks: chunks.into(), remaining }
    }
}

impl http_body::Body for ChunkBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let next = self.chunks.pop_front();
        if let Some(chunk) = &next {
            self.remaining -= chunk.len() as u64;
        }
        std::task::Poll::Ready(next.map(|chunk| Ok(http_body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// The compressed path: raw chunks of `part_size` are counted, compressed in parallel on blocking threads (each an
/// independent member), and the members, in order, fill parts of at least `part_size` stored bytes.
async fn upload_compressed<S>(
    source: S,
    uploader: &PartUploader,
    settings: &RelaySettings,
) -> Result<(Vec<CompletedPart>, u64, RecordCounter, String), RelayError>
where
    S: Stream<Item = Result<Bytes, ZuoraError>> + Unpin,
{
    let (pool, destination) = (&uploader.pool, &uploader.destination);
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk_size = settings.part_size.min(pool.max_part() / 2).max(1);
    let (mut digest, width) = digest_for(&settings.checksum);
    let mut input = Input::new(source);
    let mut uploads = PartTasks::new();
    let mut compressing = std::collections::VecDeque::new();
    let mut out: Option<pool::PartSlot> = None;
    let (mut part_number, mut total) = (0i32, 0u64);
    let mut parts = Vec::new();
    loop {
        if !input.is_done() {
            let mut raw = pool.slot(chunk_size).await;
            input.fill(&mut raw, chunk_size, None).await?;
            if !raw.is_empty() {
                let compression = settings.compression;
                compressing.push_back(tokio::task::spawn_blocking(move || {
                    let member = compression.member(raw.first_chunk());
                    drop(raw);
                    member
                }));
            }
        }
        while let Some(front) = compressing.front() {
            if !input.is_done() && !front.is_finished() && compressing.len() < parallel {
                break;
            }
            let Some(task) = compressing.pop_front() else { break };
            let member = task
                .await
                .map_err(|e| s3_error("compress", destination, e))?
                .map_err(|e| s3_error("compress", destination, e))?;
            digest.update(&member);
            let target = part_size_for(part_number as u64, settings.part_size, settings.max_part_size, None);
            let slot = match out.as_mut() {
                Some(slot) => slot,
                None => out.insert(pool.slot(target).await),
            };
            slot.extend_from_slice(&member);
            if slot.len() as u64 >= target
                && let Some(full) = out.take()
            {
                part_number += 1;
                total += uploader.spawn(&mut uploads, part_number, full);
            }
            while let Some(done) = uploads.try_join_next() {
                parts.push(joined(done, destination)?);
            }
        }
        if input.is_done() && compressing.is_empty() {
            break;
        }
    }
    if let Some(last) = out.take().filter(|slot| !slot.is_empty() || part_number == 0) {
        part_number += 1;
        total += uploader.spawn(&mut uploads, part_number, last);
    } else if part_number == 0 {
        total += uploader.spawn(&mut uploads, 1, pool.slot(1).await);
    }
    while let Some(done) = uploads.join_next().await {
        parts.push(joined(done, destination)?);
    }
    parts.sort_by_key(|p| p.part_number());
    Ok((parts, total, input.counter, encode_digest(&digest, width)))
}

fn joined(
    done: Result<Result<CompletedPart, RelayError>, tokio::task::JoinError>,
    destination: &Destination,
) -> Result<CompletedPart, RelayError> {
    done.map_err(|e| s3_error("UploadPart", destination, e))?
}
