//! The streaming relay: a result file goes from Zuora's HTTP body into an S3 multipart upload, counted on the
//! way, with memory bounded by the part pool whatever the file's size.
//!
//! GET body chunks -> record counter (quote-aware, on the bytes as they pass; a gzip file's decompressed as they
//! pass) -> the current part's buffer -> when full, the part is uploaded by its own task while the next one fills. A part's room is taken from the pool
//! before it is filled, so when every part is in flight the download waits. Nothing is published here: the caller
//! completes the upload only after checking the count, or aborts it.

pub mod compress;
pub mod gunzip;
mod input;
pub mod part_size;
pub mod pool;

use bytes::Bytes;
use common::csv_count::RecordCounter;
use common::store::{ChecksumAlgorithm, ObjectStore, StoreError, Upload, UploadedPart};
use common::zuora::ZuoraError;
use compress::Compression;
use futures::Stream;
use input::Input;
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
    /// The file is gzip (Zuora's `format: gzip`): its records are counted as it decompresses, and it is stored as
    /// it came when `compression` is [`Compression::GzipAsSent`], otherwise decompressed (then compressed again as
    /// `compression` says).
    pub gzip_source: bool,
}

/// A relay that failed. The multipart upload, if one was started, has been aborted.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading the file from Zuora failed (retryable: start the file again).
    #[error("reading the file: {0}")]
    Source(#[from] ZuoraError),
    /// A storage call failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A gzip file that does not decompress whole (cut short, damaged, or not gzip): not the file Zuora meant.
    #[error("the file is not a whole gzip file: {0}")]
    BadGzip(#[source] std::io::Error),
    /// The transfer was slower on the whole than its allowance (`file_deadline_secs` and the time its bytes take at
    /// `file_min_kib_per_sec`); it was abandoned and its upload aborted.
    #[error("the transfer had not ended after {0:?}, its allowance for the bytes it had read")]
    Deadline(std::time::Duration),
    /// Nothing was read from Zuora for this long (`file_stall_secs`); the transfer was abandoned and its upload
    /// aborted.
    #[error("the transfer stalled: nothing read for {0:?}")]
    Stalled(std::time::Duration),
    /// The relay's own machinery failed (a part's task panicked, a compressor failed) while writing this key.
    #[error("{operation} for {key}: {detail}")]
    Internal {
        /// What was being done.
        operation: &'static str,
        /// The object being written.
        key: String,
        /// What failed.
        detail: String,
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

/// Multipart uploads left neither completed nor aborted: their work was abandoned (a task cancelled at a deadline
/// or at shutdown), or their abort kept failing. The worker aborts them at a deadline and the service before the
/// process exits; the bucket's lifecycle rule is the backstop for a kill.
#[derive(Default)]
pub struct UploadTracker {
    orphans: std::sync::Mutex<Vec<(Arc<dyn ObjectStore>, Upload)>>,
}

/// Attempts at aborting one upload before it is left to the bucket's lifecycle rule.
const ABORT_ATTEMPTS: u32 = 4;

/// Aborts an upload, trying again after a short pause when the store fails (the last error is returned).
async fn abort_upload(store: &dyn ObjectStore, upload: &Upload) -> Result<(), StoreError> {
    let mut pause = std::time::Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match store.abort_upload(upload).await {
            Err(_) if attempt < ABORT_ATTEMPTS => {
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            settled => return settled,
        }
    }
}

impl UploadTracker {
    /// Aborts every abandoned upload; returns how many.
    pub async fn abort_orphans(&self) -> usize {
        let orphans = std::mem::take(&mut *self.orphans.lock().unwrap_or_else(|e| e.into_inner()));
        for (store, upload) in &orphans {
            if let Err(e) = abort_upload(&**store, upload).await {
                tracing::warn!(error = %e, "could not abort an abandoned upload; the lifecycle rule will");
            }
        }
        orphans.len()
    }
}

/// An upload in progress: if dropped before it is settled, it is handed to the tracker.
struct UploadGuard {
    tracker: Arc<UploadTracker>,
    store: Arc<dyn ObjectStore>,
    upload: Arc<Upload>,
    settled: bool,
}

impl UploadGuard {
    /// Throws the upload's parts away, trying a few times: an open upload costs storage until the lifecycle rule
    /// ends it. Settled only once the store said so: an abort that kept failing, or whose future was dropped
    /// (a deadline, a shutdown) before it ended, leaves the upload to the tracker, which aborts it again.
    async fn abort(&mut self) -> Result<(), StoreError> {
        abort_upload(&*self.store, &self.upload).await?;
        self.settled = true;
        Ok(())
    }
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        if !self.settled {
            let orphan = (self.store.clone(), Upload::clone(&self.upload));
            self.tracker.orphans.lock().unwrap_or_else(|e| e.into_inner()).push(orphan);
        }
    }
}

/// Every part uploaded, nothing published yet: complete or abort.
#[must_use = "an upload left neither completed nor aborted keeps its parts (and their cost) in S3"]
pub struct PendingUpload {
    guard: UploadGuard,
    parts: Vec<UploadedPart>,
    /// Bytes uploaded.
    pub bytes: u64,
    /// What the counter saw.
    pub counter: RecordCounter,
    /// Full-object checksum, combined from the parts' (base64, as S3 writes checksums).
    pub checksum_value: String,
}

/// A published object.
#[derive(Debug, Clone)]
pub struct Published {
    /// Bytes.
    pub bytes: u64,
    /// Parts.
    pub parts: usize,
    /// Full-object checksum of the stored bytes (base64, big-endian, as S3 writes them), combined from the
    /// parts' checksums, each of which S3 checked against the bytes it received.
    pub checksum: String,
}

impl PendingUpload {
    /// Makes the object visible.
    pub async fn complete(mut self) -> Result<Published, RelayError> {
        let parts = self.parts.len();
        let g = &self.guard;
        if let Err(error) = g.store.complete_upload(&g.upload, std::mem::take(&mut self.parts)).await {
            let _ = self.guard.abort().await;
            return Err(error.into());
        }
        self.guard.settled = true;
        Ok(Published { bytes: self.bytes, parts, checksum: std::mem::take(&mut self.checksum_value) })
    }

    /// Throws every part away.
    pub async fn abort(mut self) -> Result<(), RelayError> {
        Ok(self.guard.abort().await?)
    }

    /// Throws away an upload that will not be completed: its parts are released now, not by the bucket's lifecycle
    /// rule, which stays the backstop when the abort fails (logged).
    pub async fn abandon(self) {
        if let Err(e) = self.abort().await {
            tracing::warn!(error = %e, "could not abort a multipart upload; the bucket's lifecycle rule will");
        }
    }
}

/// A failure of the relay's own machinery (a task that panicked, a compressor that failed), reported against
/// the object it was writing, never taken for a store's answer.
fn internal_error(operation: &'static str, destination: &Destination, err: impl std::fmt::Display) -> RelayError {
    RelayError::Internal { operation, key: destination.key.clone(), detail: err.to_string() }
}

/// Streams `source` into a multipart upload at `destination`, counting records. On any failure the upload is
/// aborted before the error is returned.
pub async fn relay<S, E>(
    source: S,
    content_length: Option<u64>,
    store: &Arc<dyn ObjectStore>,
    destination: &Destination,
    pool: &Arc<PartPool>,
    settings: &RelaySettings,
    tracker: &Arc<UploadTracker>,
) -> Result<PendingUpload, RelayError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    RelayError: From<E>,
{
    let upload = store
        .create_upload(&destination.bucket, &destination.key, &destination.content_type, settings.checksum)
        .await?;
    let upload = Arc::new(upload);
    let mut guard =
        UploadGuard { tracker: tracker.clone(), store: store.clone(), upload: upload.clone(), settled: false };
    let uploader = PartUploader { store: store.clone(), upload, pool: pool.clone() };
    let input = Input::new(source, settings);
    let uploaded = match settings.compression {
        Compression::None | Compression::GzipAsSent => {
            // A decompressed file's length is not the length Zuora gave.
            let length = content_length.filter(|_| input.stores_what_it_reads());
            upload_parts(input, length, &uploader, destination, settings).await
        }
        Compression::Gzip(_) | Compression::Zstd(_) => upload_compressed(input, &uploader, destination, settings).await,
    };
    match uploaded {
        Ok((parts, bytes, counter, checksum_value)) => {
            Ok(PendingUpload { guard, parts, bytes, counter, checksum_value })
        }
        Err(error) => {
            let _ = guard.abort().await;
            Err(error)
        }
    }
}

async fn upload_parts<S, E>(
    mut input: Input<S>,
    content_length: Option<u64>,
    uploader: &PartUploader,
    destination: &Destination,
    settings: &RelaySettings,
) -> Result<Uploaded, RelayError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    RelayError: From<E>,
{
    let pool = &uploader.pool;
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
        input.fill(&mut slot, size).await?;
        if slot.is_empty() && index > 0 {
            break;
        }
        total += uploader.spawn(&mut uploads, index as i32 + 1, slot.freeze());
        if input.is_done() {
            break;
        }
    }
    while let Some(done) = uploads.join_next().await {
        parts.push(joined(done, destination)?);
    }
    Ok(uploaded(parts, total, input.counter, settings.checksum))
}

/// The parts, the bytes stored, what the counter saw, and the full-object checksum.
type Uploaded = (Vec<UploadedPart>, u64, RecordCounter, String);

/// A part S3 accepted, with its checksum and size.
struct SentPart {
    part: UploadedPart,
    checksum: u64,
    len: u64,
}

/// The parts in order and the whole object's checksum, combined from theirs.
fn uploaded(mut sent: Vec<SentPart>, total: u64, counter: RecordCounter, algorithm: ChecksumAlgorithm) -> Uploaded {
    sent.sort_by_key(|p| p.part.number);
    let mut whole = sent.iter().map(|p| (p.checksum, p.len));
    let first = whole.next().map_or(algorithm.of(&[]), |(checksum, _)| checksum);
    let checksum = whole.fold(first, |acc, (checksum, len)| algorithm.combine(acc, checksum, len));
    (sent.into_iter().map(|p| p.part).collect(), total, counter, algorithm.encode(checksum))
}

/// Uploads parts of one multipart upload, each on its own task.
struct PartUploader {
    store: Arc<dyn ObjectStore>,
    upload: Arc<Upload>,
    pool: Arc<PartPool>,
}

type PartTasks = JoinSet<Result<SentPart, RelayError>>;

impl PartUploader {
    /// Starts checksumming and uploading the part's bytes as part `part_number`; pooled chunks go back to the
    /// pool when it is done. Returns the part's size.
    fn spawn(&self, uploads: &mut PartTasks, part_number: i32, part: pool::FrozenPart) -> u64 {
        let len = part.len;
        let (store, upload, pool) = (self.store.clone(), self.upload.clone(), self.pool.clone());
        uploads.spawn(async move {
            let checksum = upload.checksum.of(&part.chunks);
            let out = store.upload_part(&upload, part_number, part.chunks.clone(), checksum).await;
            part.release(&pool);
            Ok(SentPart { part: out?, checksum, len })
        });
        len
    }
}

/// Compressed parts uploading at once per file. Compressed members are not in the pool (raw chunks are): the part
/// being filled and these keep a compressed file's memory outside the pool to about three parts.
const COMPRESSED_PARTS_IN_FLIGHT: usize = 2;

/// The compressed path: raw chunks of `part_size` (from the pool) are counted, compressed in parallel on blocking
/// threads (each an independent member) and given back; the members, in order, fill parts of at least `part_size`
/// stored bytes. A part being filled holds no pool room, so a file waiting for raw room never holds room another
/// file (or its own next chunk) needs: files compressing at once cannot stall each other.
async fn upload_compressed<S, E>(
    mut input: Input<S>,
    uploader: &PartUploader,
    destination: &Destination,
    settings: &RelaySettings,
) -> Result<Uploaded, RelayError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    RelayError: From<E>,
{
    let pool = &uploader.pool;
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk_size = settings.part_size.min(pool.max_part() / 2).max(1);
    let mut uploads = PartTasks::new();
    let mut compressing = std::collections::VecDeque::new();
    let (mut out, mut out_len) = (Vec::new(), 0u64);
    let (mut part_number, mut total) = (0i32, 0u64);
    let mut parts = Vec::new();
    loop {
        if !input.is_done() {
            let mut raw = pool.slot(chunk_size).await;
            input.fill(&mut raw, chunk_size).await?;
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
                .map_err(|e| internal_error("compress", destination, e))?
                .map_err(|e| internal_error("compress", destination, e))?;
            out_len += member.len() as u64;
            out.push(Bytes::from(member));
            let target = part_size_for(part_number as u64, settings.part_size, settings.max_part_size, None);
            if out_len >= target {
                while uploads.len() >= COMPRESSED_PARTS_IN_FLIGHT {
                    if let Some(done) = uploads.join_next().await {
                        parts.push(joined(done, destination)?);
                    }
                }
                part_number += 1;
                total +=
                    uploader.spawn(&mut uploads, part_number, pool::FrozenPart::unpooled(std::mem::take(&mut out)));
                out_len = 0;
            }
        }
        if input.is_done() && compressing.is_empty() {
            break;
        }
    }
    if !out.is_empty() || part_number == 0 {
        // The last part (an empty file still gets one, empty, part).
        part_number += 1;
        total += uploader.spawn(&mut uploads, part_number, pool::FrozenPart::unpooled(out));
    }
    while let Some(done) = uploads.join_next().await {
        parts.push(joined(done, destination)?);
    }
    Ok(uploaded(parts, total, input.counter, settings.checksum))
}

fn joined(
    done: Result<Result<SentPart, RelayError>, tokio::task::JoinError>,
    destination: &Destination,
) -> Result<SentPart, RelayError> {
    done.map_err(|e| internal_error("UploadPart", destination, e))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::store::LocalStore;
    use std::sync::atomic::Ordering;
    use test_support::stores::{Intercept, Intercepted};

    const MIB: u64 = 1024 * 1024;

    /// Bytes gzip shrinks to about a third: a part takes several compressed members to fill.
    fn noise(len: usize, mut state: u64) -> Bytes {
        let mut bytes = Vec::with_capacity(len);
        while bytes.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.extend_from_slice(&state.to_le_bytes());
            bytes.extend_from_slice(&[b'a'; 24]);
        }
        bytes.truncate(len);
        Bytes::from(bytes)
    }

    /// Settings, pool and tracker for small files: one uncompressed 5 MiB part each.
    fn one_part_relay() -> (RelaySettings, Arc<PartPool>, Arc<UploadTracker>) {
        let settings = RelaySettings {
            part_size: 5 * MIB,
            max_part_size: 5 * MIB,
            checksum: ChecksumAlgorithm::Crc32c,
            compression: Compression::None,
            gzip_source: false,
        };
        (settings, PartPool::new(10 * MIB, 5 * MIB), Arc::new(UploadTracker::default()))
    }

    #[tokio::test]
    async fn an_upload_whose_abort_was_cut_off_is_aborted_by_the_tracker() {
        let scratch = test_support::Scratch::new("relay-abort");
        let root = scratch.path();
        // The first abort never answers (a request cut off by a deadline or a shutdown).
        let aborts = std::sync::atomic::AtomicU32::new(0);
        let store: Arc<dyn ObjectStore> =
            Arc::new(Intercepted::new(Arc::new(LocalStore::new(root)), move |operation, _| {
                let first_abort = operation == "AbortMultipartUpload" && aborts.fetch_add(1, Ordering::SeqCst) == 0;
                if first_abort { Intercept::Hang } else { Intercept::Pass }
            }));
        let (settings, pool, tracker) = one_part_relay();
        // The download breaks after its first chunk: the relay aborts its upload, and that abort never answers.
        let broken = ZuoraError::Http { endpoint: "file", status: 400, code: None, body: String::new() };
        let source = futures::stream::iter([Ok(Bytes::from_static(b"Id\n1\n")), Err(broken)]);
        let destination = Destination { bucket: "lake".into(), key: "a.csv".into(), content_type: "text/csv".into() };
        let relay = relay(source, None, &store, &destination, &pool, &settings, &tracker);
        // Abandoned, as at a deadline or a shutdown: the upload is still open, and the tracker knows it.
        assert!(tokio::time::timeout(std::time::Duration::from_millis(300), relay).await.is_err());
        let open = || LocalStore::new(root).open_uploads();
        assert_eq!(open(), 1);
        assert_eq!(tracker.abort_orphans().await, 1);
        assert_eq!(open(), 0);
    }

    #[tokio::test]
    async fn a_part_task_that_panics_is_the_relays_failure_not_the_stores() {
        let scratch = test_support::Scratch::new("relay-panic");
        let root = scratch.path();
        let store: Arc<dyn ObjectStore> =
            Arc::new(Intercepted::new(Arc::new(LocalStore::new(root)), |operation, _| {
                assert_ne!(operation, "UploadPart", "a bug in the part's task");
                Intercept::Pass
            }));
        let (settings, pool, tracker) = one_part_relay();
        let source = futures::stream::iter([Ok::<_, ZuoraError>(Bytes::from_static(b"Id\n1\n"))]);
        let destination = Destination { bucket: "lake".into(), key: "a.csv".into(), content_type: "text/csv".into() };
        match relay(source, None, &store, &destination, &pool, &settings, &tracker).await {
            Err(RelayError::Internal { operation: "UploadPart", key, detail }) => {
                assert_eq!(key, "a.csv");
                assert!(detail.contains("panic"), "{detail}");
            }
            Err(other) => panic!("expected the relay's own failure, got {other:?}"),
            Ok(_) => panic!("expected the relay's own failure, got an upload"),
        }
        assert_eq!(LocalStore::new(root).open_uploads(), 0, "aborted");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compressed_files_at_once_through_the_smallest_pool_all_finish() {
        let scratch = test_support::Scratch::new("relay");
        let root = scratch.path();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(root));
        let settings = RelaySettings {
            part_size: 5 * MIB,
            max_part_size: 64 * MIB,
            checksum: ChecksumAlgorithm::Crc32c,
            compression: Compression::Gzip(1),
            gzip_source: false,
        };
        // The smallest pool compression accepts: two parts.
        let pool = PartPool::new(10 * MIB, 5 * MIB);
        let tracker = Arc::new(UploadTracker::default());
        let relay_one = |seed: u64| {
            let (store, pool, tracker, settings) = (store.clone(), pool.clone(), tracker.clone(), settings.clone());
            async move {
                let body = noise(24 * MIB as usize, seed);
                let source = futures::stream::iter(
                    body.chunks(64 * 1024).map(|c| Ok::<_, ZuoraError>(Bytes::copy_from_slice(c))).collect::<Vec<_>>(),
                );
                let destination = Destination {
                    bucket: "lake".into(),
                    key: format!("f{seed}.csv.gz"),
                    content_type: "application/gzip".into(),
                };
                let pending = relay(source, None, &store, &destination, &pool, &settings, &tracker).await?;
                pending.complete().await
            }
        };
        // A hang detector, not a time limit: they finish in seconds, or never (each holding part of the pool while
        // waiting for more).
        let all = futures::future::join_all((1..=4).map(relay_one));
        let published = tokio::time::timeout(std::time::Duration::from_secs(120), all).await;
        for file in published.expect("the compressed relays deadlocked on the pool") {
            assert!(file.unwrap().bytes > 5 * MIB);
        }
    }
}
