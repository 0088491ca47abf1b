//! An object store that forwards every call to another, except the calls a test decides to fail or to leave
//! unanswered: a process that dies before a write, a request cut off mid-flight.

use bytes::Bytes;
use common::store::{
    ByteChunks, ChecksumAlgorithm, ObjectStore, Precondition, StoreError, Tagged, Upload, UploadedPart,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::Arc;

/// What becomes of one call.
pub enum Intercept {
    /// It reaches the store.
    Pass,
    /// It fails at once with this detail (a transient error, as a crash or a lost connection gives).
    Fail(&'static str),
    /// It never answers.
    Hang,
}

/// Decides each call's fate from its S3 operation name (`PutObject`, `AbortMultipartUpload`, ...) and key.
pub type Hook = Box<dyn Fn(&'static str, &str) -> Intercept + Send + Sync>;

/// `inner`, with `hook` deciding each call.
pub struct Intercepted {
    inner: Arc<dyn ObjectStore>,
    hook: Hook,
}

impl Intercepted {
    /// Wraps `inner`.
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        hook: impl Fn(&'static str, &str) -> Intercept + Send + Sync + 'static,
    ) -> Self {
        Self { inner, hook: Box::new(hook) }
    }

    fn call<'a, T: Send + 'a>(
        &self,
        operation: &'static str,
        bucket: &str,
        key: &str,
        forward: impl FnOnce() -> BoxFuture<'a, Result<T, StoreError>>,
    ) -> BoxFuture<'a, Result<T, StoreError>> {
        match (self.hook)(operation, key) {
            Intercept::Pass => forward(),
            Intercept::Fail(detail) => {
                let error = StoreError::transient(operation, bucket, key, detail);
                async move { Err(error) }.boxed()
            }
            Intercept::Hang => futures::future::pending().boxed(),
        }
    }
}

impl ObjectStore for Intercepted {
    fn put<'a>(&'a self, bucket: &'a str, key: &'a str, body: Bytes) -> BoxFuture<'a, Result<(), StoreError>> {
        self.call("PutObject", bucket, key, || self.inner.put(bucket, key, body))
    }
    fn get<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        self.call("GetObject", bucket, key, || self.inner.get(bucket, key))
    }
    fn get_stream<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<ByteChunks>, StoreError>> {
        self.call("GetObject", bucket, key, || self.inner.get_stream(bucket, key))
    }
    fn get_tagged<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Tagged>, StoreError>> {
        self.call("GetObject", bucket, key, || self.inner.get_tagged(bucket, key))
    }
    fn put_if<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Bytes,
        condition: &'a Precondition,
    ) -> BoxFuture<'a, Result<String, StoreError>> {
        self.call("PutObject", bucket, key, || self.inner.put_if(bucket, key, body, condition))
    }
    fn list<'a>(&'a self, bucket: &'a str, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        self.call("ListObjectsV2", bucket, prefix, || self.inner.list(bucket, prefix))
    }
    fn copy<'a>(&'a self, bucket: &'a str, from: &'a str, to: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.call("CopyObject", bucket, to, || self.inner.copy(bucket, from, to))
    }
    fn create_upload<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        content_type: &'a str,
        checksum: ChecksumAlgorithm,
    ) -> BoxFuture<'a, Result<Upload, StoreError>> {
        self.call("CreateMultipartUpload", bucket, key, || {
            self.inner.create_upload(bucket, key, content_type, checksum)
        })
    }
    fn upload_part<'a>(
        &'a self,
        upload: &'a Upload,
        number: i32,
        body: Vec<Bytes>,
        checksum: u64,
    ) -> BoxFuture<'a, Result<UploadedPart, StoreError>> {
        self.call("UploadPart", &upload.bucket, &upload.key, || self.inner.upload_part(upload, number, body, checksum))
    }
    fn complete_upload<'a>(
        &'a self,
        upload: &'a Upload,
        parts: Vec<UploadedPart>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.call("CompleteMultipartUpload", &upload.bucket, &upload.key, || self.inner.complete_upload(upload, parts))
    }
    fn abort_upload<'a>(&'a self, upload: &'a Upload) -> BoxFuture<'a, Result<(), StoreError>> {
        self.call("AbortMultipartUpload", &upload.bucket, &upload.key, || self.inner.abort_upload(upload))
    }
}
