//! Object storage: the [`ObjectStore`] trait, its S3 implementation and a local-directory one.
//!
//! Small objects (ledger records, metadata JSON) are written whole; the consumer's large files go through a
//! multipart upload (create -> parts -> complete, or abort), so that no file is ever held in memory whole and
//! nothing is visible before it is complete.

mod local;
mod s3;

pub use local::LocalStore;
pub use s3::S3Store;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use crc_fast::{CrcAlgorithm, Digest};
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
    /// Whether trying again can help.
    pub kind: StoreErrorKind,
    /// The error underneath (the SDK's, with its code and request id), when there is one.
    #[source]
    pub source: Option<crate::BoxError>,
}

/// Whether a storage failure may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// A time-out, a throttle, a server error: the same call may succeed later.
    Transient,
    /// The call can never succeed as configured (access denied, no such bucket, bad credentials): doing the work
    /// again only repeats the downloads before it.
    Permanent,
    /// A conditional write's condition did not hold (S3's 412 `PreconditionFailed` or 409
    /// `ConditionalRequestConflict`): someone else wrote the object since it was read. Read it again, then decide.
    Conflict,
}

impl StoreError {
    /// A failure that may pass.
    pub fn transient(operation: &'static str, bucket: &str, key: &str, message: impl ToString) -> Self {
        let (bucket, key, message) = (bucket.to_owned(), key.to_owned(), message.to_string());
        Self { operation, bucket, key, message, kind: StoreErrorKind::Transient, source: None }
    }

    /// True when trying again cannot help.
    pub fn is_permanent(&self) -> bool {
        self.kind == StoreErrorKind::Permanent
    }

    /// True when a conditional write found the object changed (or present, or absent) since it was read.
    pub fn is_conflict(&self) -> bool {
        self.kind == StoreErrorKind::Conflict
    }
}

/// An object's bytes, chunk by chunk.
pub type ByteChunks = futures::stream::BoxStream<'static, Result<Bytes, StoreError>>;

/// An object and its version tag (S3's ETag), for a conditional write of the next version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    /// The object's bytes.
    pub body: Bytes,
    /// Its version tag.
    pub tag: String,
}

/// When a conditional write may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Only if no object is at the key (`If-None-Match: *`): creating a record.
    Absent,
    /// Only if the object at the key is still the version with this tag (`If-Match`): updating a record read.
    Tagged(String),
}

/// The checksum the store computes and checks on every part of an upload and on its completion. The same
/// algorithm must be named on create, every part and complete (S3 refuses a mix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum ChecksumAlgorithm {
    /// CRC32C (Castagnoli), 4 bytes.
    #[serde(rename = "CRC32C")]
    Crc32c,
    /// CRC64/NVME, 8 bytes.
    #[serde(rename = "CRC64NVME")]
    Crc64Nvme,
}

impl ChecksumAlgorithm {
    fn crc(self) -> CrcAlgorithm {
        match self {
            Self::Crc32c => CrcAlgorithm::Crc32Iscsi,
            Self::Crc64Nvme => CrcAlgorithm::Crc64Nvme,
        }
    }

    /// The checksum of bytes given in chunks, in order.
    pub fn of(self, chunks: &[Bytes]) -> u64 {
        let mut digest = Digest::new(self.crc());
        for chunk in chunks {
            digest.update(chunk);
        }
        digest.finalize()
    }

    /// The checksum of bytes whose first part has checksum `first` and whose second part, of `second_len` bytes,
    /// has checksum `second`: a whole object's checksum from its parts' without reading them again.
    pub fn combine(self, first: u64, second: u64, second_len: u64) -> u64 {
        crc_fast::checksum_combine(self.crc(), first, second, second_len)
    }

    /// Base64 of the big-endian value, as S3 writes checksums.
    pub fn encode(self, value: u64) -> String {
        let width = match self {
            Self::Crc32c => 4,
            Self::Crc64Nvme => 8,
        };
        STANDARD.encode(&value.to_be_bytes()[8 - width..])
    }

    /// Its name, as configurations and completion messages write it (`CRC32C`, `CRC64NVME`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Crc32c => "CRC32C",
            Self::Crc64Nvme => "CRC64NVME",
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
    /// The part's checksum (base64), checked by the store against the bytes it received.
    pub checksum: String,
}

/// Buckets of keyed objects.
pub trait ObjectStore: Send + Sync {
    /// Writes an object whole (replacing any object at that key).
    fn put<'a>(&'a self, bucket: &'a str, key: &'a str, body: Bytes) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Reads an object whole, or `None` when there is none.
    fn get<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>>;
    /// Reads an object as a stream of chunks (memory bounded whatever its size), or `None` when there is none.
    fn get_stream<'a>(&'a self, bucket: &'a str, key: &'a str)
    -> BoxFuture<'a, Result<Option<ByteChunks>, StoreError>>;
    /// Reads an object whole with its version tag, or `None` when there is none.
    fn get_tagged<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Tagged>, StoreError>>;
    /// Writes an object whole if `condition` holds, atomically with the check; returns the new version's tag. When
    /// it does not hold, fails with [`StoreErrorKind::Conflict`] and writes nothing.
    fn put_if<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Bytes,
        condition: &'a Precondition,
    ) -> BoxFuture<'a, Result<String, StoreError>>;
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
    /// Uploads part `number` (1-based), whose bytes are `body`'s chunks in order and whose checksum in the
    /// upload's algorithm is `checksum`: the store refuses the part if the bytes it received do not match.
    fn upload_part<'a>(
        &'a self,
        upload: &'a Upload,
        number: i32,
        body: Vec<Bytes>,
        checksum: u64,
    ) -> BoxFuture<'a, Result<UploadedPart, StoreError>>;
    /// Makes the object visible: its bytes are the parts in order.
    fn complete_upload<'a>(
        &'a self,
        upload: &'a Upload,
        parts: Vec<UploadedPart>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Throws the upload's parts away. An upload that is gone already (aborted, or completed) is not an error:
    /// an abort may be tried again after an answer was lost.
    fn abort_upload<'a>(&'a self, upload: &'a Upload) -> BoxFuture<'a, Result<(), StoreError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_objects_checksum_combines_from_its_parts_and_is_written_as_s3_writes_it() {
        let whole = [Bytes::from_static(b"Id,Name\n1,\"a\nb\"\n"), Bytes::from_static(b"2,c\n")];
        for algorithm in [ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Crc64Nvme] {
            let (first, second) = (algorithm.of(&whole[..1]), algorithm.of(&whole[1..]));
            assert_eq!(algorithm.combine(first, second, whole[1].len() as u64), algorithm.of(&whole));
            assert_ne!(first, algorithm.of(&whole));
        }
        // "123456789", the CRC catalogue's check input: CRC32C 0xE3069283.
        let check = [Bytes::from_static(b"123456789")];
        assert_eq!(ChecksumAlgorithm::Crc32c.encode(ChecksumAlgorithm::Crc32c.of(&check)), "4waSgw==");
        // CRC-64/NVME: 0xAE8B14860A799888.
        assert_eq!(ChecksumAlgorithm::Crc64Nvme.encode(ChecksumAlgorithm::Crc64Nvme.of(&check)), "rosUhgp5mIg=");
    }
}
