//! Object storage: the [`ObjectStore`] trait and its S3 implementation.
//!
//! Used for small objects (ledger records, metadata JSON); the consumer's streaming upload of large files has its
//! own multipart path.

mod s3;

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

/// Buckets of keyed objects.
pub trait ObjectStore: Send + Sync {
    /// Writes an object whole (replacing any object at that key).
    fn put<'a>(&'a self, bucket: &'a str, key: &'a str, body: Bytes) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Reads an object whole, or `None` when there is none.
    fn get<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>>;
    /// The keys under a prefix, in lexical order.
    fn list<'a>(&'a self, bucket: &'a str, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;
}
