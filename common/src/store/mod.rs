//! Object storage: the [`ObjectStore`] trait, its S3 implementation and a local-directory one.
//!
//! Small objects (ledger records, metadata JSON) are written whole; the consumer's large files go through a
//! multipart upload (create -> parts -> complete, or abort), so that no file is ever held in memory whole and
//! nothing is visible before it is complete.

mod local;
mod s3;

pub use local::LocalStore;
pub use s3::S3Store;

use bytes::Bytes;
use futures::future::BoxFuture;

/// A storage operation that failed (after the SDK's own retries).
#[derive(Debug, thiserror::Error)]
#[error("{operation} s3://{bucket}/{key}: {message}")]
pub struct StoreError {
    /// What was attempted.
    pub operation: &'static str,
    /// The bucket.
    pub bucket: String,
    /// The key or prefix.
    pub key: String,
    /// What went wrong.
    pub message: String,
}

/// The checksum the store computes and checks on every part of an upload and on its completion. The same
/// algorithm must be named on create, every part and complete (S3 refuses a mix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    /// CRC32C (Castagnoli), 4 bytes.
    Crc32c,
    /// CRC64/NVME, 8 bytes.
    Crc64Nvme,
}

impl ChecksumAlgorithm {
    /// The algorithm a configuration names (`CRC32C` or `CRC64NVME`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "CRC32C" => Some(Self::Crc32c),
            "CRC64NVME" => Some(Self::Crc64Nvme),
            _ => None,
        }
    }
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The bucket.
    pub bucket: String,
    /// The key the object gets when the upload completes.
    pub key: String,
    /// The store's id for the upload.
    pub id: String,
    /// The checksum named on every call of this upload.
    pub checksum: ChecksumAlgorithm,
}

/// A part the store accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    /// 1-based part number.
    pub number: i32,
    /// The store's tag for the part, if it gives one.
    pub etag: Option<String>,
    /// The part's checksum as the store computed it (base64), if it gives one.
    pub checksum: Option<String>,
}

/// Buckets of keyed objects.
pub trait ObjectStore: Send + Sync {
    /// Writes an object whole (replacing any object at that key).
    fn put<'a>(&'a self, bucket: &'a str, key: &'a str, body: Bytes) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Reads an object whole, or `None` when there is none.
    fn get<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>>;
    /// The keys under a prefix, in lexical order.
    fn list<'a>(&'a self, bucket: &'a str, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;
    /// Copies an object within a bucket, server-side where the store can.
    fn copy<'a>(&'a self, bucket: &'a str, from: &'a str, to: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Starts a multipart upload; nothing is visible at `key` until it completes.
    fn create_upload<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        content_type: &'a str,
        checksum: ChecksumAlgorithm,
    ) -> BoxFuture<'a, Result<Upload, StoreError>>;
    /// Uploads part `number` (1-based), whose bytes are `body`'s chunks in order.
    fn upload_part<'a>(
        &'a self,
        upload: &'a Upload,
        number: i32,
        body: Vec<Bytes>,
    ) -> BoxFuture<'a, Result<UploadedPart, StoreError>>;
    /// Makes the object visible: its bytes are the parts in order.
    fn complete_upload<'a>(
        &'a self,
        upload: &'a Upload,
        parts: Vec<UploadedPart>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Throws the upload's parts away.
    fn abort_upload<'a>(&'a self, upload: &'a Upload) -> BoxFuture<'a, Result<(), StoreError>>;
}
