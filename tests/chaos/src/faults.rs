//! Faults injected at the services' boundaries: every [`ObjectStore`] and [`Queue`] call of a service may fail
//! at once, time out, or land and still report a failure (the write happened, the caller saw an error), drawn
//! from one seeded generator and counted by kind and call site.

use bytes::Bytes;
use common::queue::{OutgoingMessage, Queue, QueueDepth, QueueError, ReceivedMessage};
use common::store::{
    ByteChunks, ChecksumAlgorithm, ObjectStore, Precondition, StoreError, Tagged, Upload, UploadedPart,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long an injected time-out keeps the caller waiting (planned time).
const TIMEOUT: Duration = Duration::from_secs(30);

/// What an injected fault does to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fails at once; nothing happened.
    Fail,
    /// Waits, then fails; nothing happened.
    Timeout,
    /// Happens, then reports a failure.
    Lost,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Timeout => "timeout",
            Self::Lost => "landed-but-failed",
        }
    }
}

/// The seeded source of every fault of one run, and the count of what it injected.
pub struct Injector {
    rng: Mutex<StdRng>,
    rate: f64,
    /// Real seconds per planned second (see `Plan::pace`).
    pace: f64,
    enabled: AtomicBool,
    counts: Mutex<BTreeMap<(String, String), u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Injector {
    /// Faults on a share `rate` of the calls.
    pub fn new(seed: u64, rate: f64, pace: f64) -> Arc<Self> {
        Arc::new(Self {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            rate,
            pace,
            enabled: AtomicBool::new(true),
            counts: Mutex::default(),
        })
    }

    /// Stops injecting (the faults are over; what follows is the drain).
    pub fn disable(&self) {
        self.enabled.store(false, Ordering::SeqCst);
    }

    /// Whether faults are being injected.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// A number from the run's generator in `[0, 1)`.
    pub fn uniform(&self) -> f64 {
        lock(&self.rng).random()
    }

    /// Counts something injected outside a call (a kill, a duplicate delivery, an operator action).
    pub fn record(&self, site: &str, kind: &str) {
        *lock(&self.counts).entry((site.to_owned(), kind.to_owned())).or_default() += 1;
    }

    /// The fault for one call at `site`, if any.
    fn draw(&self, site: &str) -> Option<Fault> {
        if !self.enabled() {
            return None;
        }
        let mut rng = lock(&self.rng);
        if rng.random::<f64>() >= self.rate {
            return None;
        }
        let fault = [Fault::Fail, Fault::Timeout, Fault::Lost][rng.random_range(0..3)];
        drop(rng);
        self.record(site, fault.name());
        Some(fault)
    }

    /// How long an injected time-out keeps its caller waiting.
    fn timeout(&self) -> Duration {
        TIMEOUT.mul_f64(self.pace)
    }

    /// Everything injected: (site, kind) -> count.
    pub fn counts(&self) -> BTreeMap<(String, String), u64> {
        lock(&self.counts).clone()
    }
}

/// Runs `call` under the fault drawn for `site` (drawn now, when the call is made): `failure` builds the error
/// the caller sees.
fn faulty<T, E, C, F>(
    injector: &Injector,
    site: &str,
    call: C,
    failure: F,
) -> impl Future<Output = Result<T, E>> + use<T, E, C, F>
where
    C: Future<Output = Result<T, E>>,
    F: FnOnce(&str) -> E,
{
    let fault = injector.draw(site);
    under(fault, injector.timeout(), call, failure)
}

async fn under<T, E>(
    fault: Option<Fault>,
    timeout: Duration,
    call: impl Future<Output = Result<T, E>>,
    failure: impl FnOnce(&str) -> E,
) -> Result<T, E> {
    match fault {
        None => call.await,
        Some(Fault::Fail) => Err(failure("injected failure")),
        Some(Fault::Timeout) => {
            tokio::time::sleep(timeout).await;
            Err(failure("injected time-out"))
        }
        Some(Fault::Lost) => {
            call.await?;
            Err(failure("injected: the call landed but its answer was lost"))
        }
    }
}

/// The owner of an upload whose create answer was lost.
const LOST_CREATE: u64 = 0;

/// Which service incarnation created each multipart upload still open, and which incarnations were killed: an
/// upload left open by a killed process is the bucket lifecycle rule's; any other is a leak.
#[derive(Default)]
pub struct UploadBook {
    open: Mutex<HashMap<String, (u64, String)>>,
    killed: Mutex<BTreeSet<u64>>,
}

impl UploadBook {
    /// Marks an incarnation as killed (it could not clean up). Incarnations are numbered from 1.
    pub fn killed(&self, owner: u64) {
        lock(&self.killed).insert(owner);
    }

    /// Open uploads: (left by killed incarnations, leaked by live ones, with their keys).
    pub fn open(&self) -> (usize, Vec<String>) {
        let mut killed = lock(&self.killed).clone();
        killed.insert(LOST_CREATE);
        let open = lock(&self.open);
        let leaked = open.values().filter(|(owner, _)| !killed.contains(owner)).map(|(_, key)| key.clone()).collect();
        (open.values().filter(|(owner, _)| killed.contains(owner)).count(), leaked)
    }
}

/// An [`ObjectStore`] whose calls fail as the injector draws.
pub struct FaultyStore {
    /// The real store.
    pub inner: Arc<dyn ObjectStore>,
    /// The faults.
    pub injector: Arc<Injector>,
    /// The incarnation using it.
    pub owner: u64,
    /// Open uploads.
    pub uploads: Arc<UploadBook>,
}

fn store_error(operation: &'static str, bucket: &str, key: &str) -> impl FnOnce(&str) -> StoreError {
    let (bucket, key) = (bucket.to_owned(), key.to_owned());
    move |message| StoreError::transient(operation, &bucket, &key, message)
}

impl ObjectStore for FaultyStore {
    fn put<'a>(&'a self, bucket: &'a str, key: &'a str, body: Bytes) -> BoxFuture<'a, Result<(), StoreError>> {
        faulty(&self.injector, "store.put", self.inner.put(bucket, key, body), store_error("PutObject", bucket, key))
            .boxed()
    }

    fn get<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        faulty(&self.injector, "store.get", self.inner.get(bucket, key), store_error("GetObject", bucket, key)).boxed()
    }

    fn get_stream<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<ByteChunks>, StoreError>> {
        let error = store_error("GetObject", bucket, key);
        faulty(&self.injector, "store.get", self.inner.get_stream(bucket, key), error).boxed()
    }

    fn get_tagged<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Tagged>, StoreError>> {
        let error = store_error("GetObject", bucket, key);
        faulty(&self.injector, "store.get", self.inner.get_tagged(bucket, key), error).boxed()
    }

    fn put_if<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Bytes,
        condition: &'a Precondition,
    ) -> BoxFuture<'a, Result<String, StoreError>> {
        let error = store_error("PutObject", bucket, key);
        faulty(&self.injector, "store.put", self.inner.put_if(bucket, key, body, condition), error).boxed()
    }

    fn list<'a>(&'a self, bucket: &'a str, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        let error = store_error("ListObjectsV2", bucket, prefix);
        faulty(&self.injector, "store.list", self.inner.list(bucket, prefix), error).boxed()
    }

    fn copy<'a>(&'a self, bucket: &'a str, from: &'a str, to: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        faulty(&self.injector, "store.copy", self.inner.copy(bucket, from, to), store_error("CopyObject", bucket, to))
            .boxed()
    }

    fn create_upload<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        content_type: &'a str,
        checksum: ChecksumAlgorithm,
    ) -> BoxFuture<'a, Result<Upload, StoreError>> {
        let fault = self.injector.draw("store.create_upload");
        // A create whose answer is lost leaves an upload nobody knows the id of: the lifecycle rule's, like a kill's.
        let owner = if fault == Some(Fault::Lost) { LOST_CREATE } else { self.owner };
        let create = async move {
            let upload = self.inner.create_upload(bucket, key, content_type, checksum).await?;
            lock(&self.uploads.open).insert(upload.id.clone(), (owner, key.to_owned()));
            Ok(upload)
        };
        under(fault, self.injector.timeout(), create, store_error("CreateMultipartUpload", bucket, key)).boxed()
    }

    fn upload_part<'a>(
        &'a self,
        upload: &'a Upload,
        number: i32,
        body: Vec<Bytes>,
        checksum: u64,
    ) -> BoxFuture<'a, Result<UploadedPart, StoreError>> {
        let error = store_error("UploadPart", &upload.bucket, &upload.key);
        faulty(&self.injector, "store.upload_part", self.inner.upload_part(upload, number, body, checksum), error)
            .boxed()
    }

    fn complete_upload<'a>(
        &'a self,
        upload: &'a Upload,
        parts: Vec<UploadedPart>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let complete = async move {
            self.inner.complete_upload(upload, parts).await?;
            lock(&self.uploads.open).remove(&upload.id);
            Ok(())
        };
        let error = store_error("CompleteMultipartUpload", &upload.bucket, &upload.key);
        faulty(&self.injector, "store.complete_upload", complete, error).boxed()
    }

    fn abort_upload<'a>(&'a self, upload: &'a Upload) -> BoxFuture<'a, Result<(), StoreError>> {
        let abort = async move {
            self.inner.abort_upload(upload).await?;
            lock(&self.uploads.open).remove(&upload.id);
            Ok(())
        };
        let error = store_error("AbortMultipartUpload", &upload.bucket, &upload.key);
        faulty(&self.injector, "store.abort_upload", abort, error).boxed()
    }
}

/// A [`Queue`] whose calls fail as the injector draws; on a standard queue a send may also be delivered a
/// second time, late (SQS's at-least-once delivery, past any deduplication window).
pub struct FaultyQueue {
    /// The real queue.
    pub inner: Arc<dyn Queue>,
    /// The faults.
    pub injector: Arc<Injector>,
    /// Share of sends delivered twice.
    pub duplicate_rate: f64,
}

impl FaultyQueue {
    fn site(&self, operation: &str) -> String {
        format!("{}.{operation}", self.inner.name())
    }

    fn error(&self, operation: &'static str) -> impl FnOnce(&str) -> QueueError {
        let queue = self.inner.name().to_owned();
        move |message| QueueError::new(operation, queue, message)
    }
}

impl Queue for FaultyQueue {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn send(&self, message: OutgoingMessage) -> BoxFuture<'_, Result<String, QueueError>> {
        async move {
            let standard = !self.inner.name().ends_with(".fifo");
            if standard && self.injector.enabled() && self.injector.uniform() < self.duplicate_rate {
                // Between six minutes and two hours later: past the five-minute deduplication window.
                let late =
                    Duration::from_secs(360 + (self.injector.uniform() * 6840.0) as u64).mul_f64(self.injector.pace);
                let copy = OutgoingMessage { delay: message.delay + late, ..message.clone() };
                self.inner.send(copy).await?;
                self.injector.record(&self.site("send"), "late-duplicate");
            }
            faulty(&self.injector, &self.site("send"), self.inner.send(message), self.error("SendMessage")).await
        }
        .boxed()
    }

    fn receive(&self, max: u32, wait: Duration) -> BoxFuture<'_, Result<Vec<ReceivedMessage>, QueueError>> {
        let error = self.error("ReceiveMessage");
        faulty(&self.injector, &self.site("receive"), self.inner.receive(max, wait), error).boxed()
    }

    fn delete<'a>(&'a self, receipt: &'a str) -> BoxFuture<'a, Result<(), QueueError>> {
        faulty(&self.injector, &self.site("delete"), self.inner.delete(receipt), self.error("DeleteMessage")).boxed()
    }

    fn set_visibility<'a>(&'a self, receipt: &'a str, timeout: Duration) -> BoxFuture<'a, Result<(), QueueError>> {
        let error = self.error("ChangeMessageVisibility");
        faulty(&self.injector, &self.site("set_visibility"), self.inner.set_visibility(receipt, timeout), error).boxed()
    }

    fn depth(&self) -> BoxFuture<'_, Result<QueueDepth, QueueError>> {
        self.inner.depth()
    }
}
