//! [`ObjectStore`] on Amazon S3 (or any server speaking its protocol, such as moto).

use super::{
    ByteChunks, ChecksumAlgorithm, ObjectStore, Precondition, StoreError, StoreErrorKind, Tagged, Upload, UploadedPart,
};
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use aws_sdk_s3::primitives::{ByteStream, SdkBody};
use aws_sdk_s3::types::{self, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

/// S3 through one client.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    acl: Option<types::ObjectCannedAcl>,
    /// The account each bucket must belong to (`ExpectedBucketOwner` on every call), when configured.
    owners: BucketOwners,
}

/// Which account owns which bucket.
#[derive(Debug, Clone, Default)]
struct BucketOwners {
    /// Every bucket's, unless one below names it.
    default: Option<String>,
    /// `(bucket name, or a prefix ending in '*', account)`.
    named: Vec<(String, String)>,
}

impl S3Store {
    /// A store on this client; objects are written without an ACL.
    pub fn new(client: Client) -> Self {
        Self { client, acl: None, owners: BucketOwners::default() }
    }

    /// The same store, sending `ExpectedBucketOwner` on every call (and `ExpectedSourceBucketOwner` on copies): S3
    /// refuses the call (403) when the bucket belongs to another account, so a bucket of the same name re-created
    /// elsewhere never receives a file, nor is read from.
    pub fn with_expected_owner(mut self, account: impl Into<String>) -> Self {
        self.owners.default = Some(account.into());
        self
    }

    /// The same store, expecting `account` to own the buckets `pattern` names (a name, or a prefix ending in `*`)
    /// rather than the default owner.
    pub fn with_bucket_owner(mut self, pattern: impl Into<String>, account: impl Into<String>) -> Self {
        self.owners.named.push((pattern.into(), account.into()));
        self
    }

    /// GetObject, its body not read yet; `None` when there is no such object.
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<GetObjectOutput>, StoreError> {
        let request = self.client.get_object().bucket(bucket).set_expected_bucket_owner(self.owner_of(bucket));
        match request.key(key).send().await {
            Ok(out) => Ok(Some(out)),
            Err(SdkError::ServiceError(e)) if matches!(e.err(), GetObjectError::NoSuchKey(_)) => Ok(None),
            Err(e) => Err(error("GetObject", bucket, key, e)),
        }
    }

    /// PutObject, only if `condition` holds when one is given; returns the new version's tag.
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        condition: Option<&Precondition>,
    ) -> Result<String, StoreError> {
        let content_type = if key.ends_with(".json") { "application/json" } else { "application/octet-stream" };
        let request = self
            .client
            .put_object()
            .bucket(bucket)
            .set_expected_bucket_owner(self.owner_of(bucket))
            .key(key)
            .content_type(content_type)
            .set_acl(self.acl.clone())
            .body(ByteStream::from(body));
        let request = match condition {
            None => request,
            Some(Precondition::Absent) => request.if_none_match("*"),
            Some(Precondition::Tagged(tag)) => request.if_match(tag),
        };
        let out = request.send().await.map_err(|e| {
            // An update of an object gone since it was read: moto answers 404, S3 412.
            let gone = matches!(condition, Some(Precondition::Tagged(_))) && e.code() == Some("NoSuchKey");
            let mut error = error("PutObject", bucket, key, e);
            if gone {
                error.kind = StoreErrorKind::Conflict;
            }
            error
        })?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    /// The account `bucket` must belong to, if one is configured.
    fn owner_of(&self, bucket: &str) -> Option<String> {
        let names = |pattern: &str| match pattern.strip_suffix('*') {
            Some(prefix) => bucket.starts_with(prefix),
            None => bucket == pattern,
        };
        let named = self.owners.named.iter().find(|(pattern, _)| names(pattern)).map(|(_, account)| account);
        named.or(self.owners.default.as_ref()).cloned()
    }

    /// The same store, writing every object (put, copy, multipart upload) with this canned ACL.
    pub fn with_acl(self, acl: types::ObjectCannedAcl) -> Self {
        Self { acl: Some(acl), ..self }
    }
}

/// S3's error codes for calls that can never succeed as configured: trying again only downloads the files again.
const PERMANENT_CODES: [&str; 11] = [
    "AccessDenied",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidAccessKeyId",
    "InvalidBucketName",
    "NoSuchBucket",
    "SignatureDoesNotMatch",
    // The bucket is in another region than the client's.
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    // A request S3 will never take as sent (a single copy over 5 GB needs UploadPartCopy, a checksum mix).
    "InvalidRequest",
    // The bucket's KMS key denies the role, or is disabled or being deleted (`KMS.*` codes are matched below).
    "KMSAccessDenied",
];

/// S3's error codes for a conditional write whose condition did not hold (412), or that raced another (409).
const CONFLICT_CODES: [&str; 2] = ["PreconditionFailed", "ConditionalRequestConflict"];

/// True when S3's error `code` says the call can never succeed as configured.
fn is_permanent_code(code: &str) -> bool {
    PERMANENT_CODES.contains(&code) || code.starts_with("KMS.")
}

fn error(
    operation: &'static str,
    bucket: &str,
    key: &str,
    err: impl std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
) -> StoreError {
    let permanent = err.code().is_some_and(is_permanent_code);
    let conflict = err.code().is_some_and(|code| CONFLICT_CODES.contains(&code));
    let mut error = StoreError::transient(operation, bucket, key, DisplayErrorContext(&err));
    if permanent {
        error.kind = StoreErrorKind::Permanent;
    } else if conflict {
        error.kind = StoreErrorKind::Conflict;
    }
    error.source = Some(Box::new(err));
    error
}

fn sdk_checksum(checksum: ChecksumAlgorithm) -> types::ChecksumAlgorithm {
    match checksum {
        ChecksumAlgorithm::Crc32c => types::ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Crc64Nvme => types::ChecksumAlgorithm::Crc64Nvme,
    }
}

impl ObjectStore for S3Store {
    fn put<'a>(&'a self, bucket: &'a str, key: &'a str, body: Bytes) -> BoxFuture<'a, Result<(), StoreError>> {
        async move { self.put_object(bucket, key, body, None).await.map(|_| ()) }.boxed()
    }

    fn get<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        async move { Ok(self.get_tagged(bucket, key).await?.map(|tagged| tagged.body)) }.boxed()
    }

    fn get_stream<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<ByteChunks>, StoreError>> {
        async move {
            let Some(out) = self.get_object(bucket, key).await? else { return Ok(None) };
            let (bucket, key) = (bucket.to_owned(), key.to_owned());
            let chunks = futures::stream::unfold(Some(out.body), move |body| {
                let (bucket, key) = (bucket.clone(), key.clone());
                async move {
                    let mut body = body?;
                    match body.next().await? {
                        Ok(chunk) => Some((Ok(chunk), Some(body))),
                        Err(e) => {
                            let error = StoreError::transient("GetObject", &bucket, &key, DisplayErrorContext(e));
                            Some((Err(error), None))
                        }
                    }
                }
            });
            Ok(Some(chunks.boxed()))
        }
        .boxed()
    }

    fn get_tagged<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Tagged>, StoreError>> {
        async move {
            let Some(out) = self.get_object(bucket, key).await? else { return Ok(None) };
            let tag = out.e_tag().unwrap_or_default().to_owned();
            let body = out
                .body
                .collect()
                .await
                .map_err(|e| StoreError::transient("GetObject", bucket, key, DisplayErrorContext(e)))?;
            Ok(Some(Tagged { body: body.into_bytes(), tag }))
        }
        .boxed()
    }

    fn put_if<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Bytes,
        condition: &'a Precondition,
    ) -> BoxFuture<'a, Result<String, StoreError>> {
        self.put_object(bucket, key, body, Some(condition)).boxed()
    }

    fn list<'a>(&'a self, bucket: &'a str, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        async move {
            let mut keys = Vec::new();
            let pages = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .set_expected_bucket_owner(self.owner_of(bucket))
                .prefix(prefix);
            let mut pages = pages.into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| error("ListObjectsV2", bucket, prefix, e))?;
                keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
            }
            keys.sort();
            Ok(keys)
        }
        .boxed()
    }

    fn copy<'a>(&'a self, bucket: &'a str, from: &'a str, to: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            self.client
                .copy_object()
                .bucket(bucket)
                .set_expected_bucket_owner(self.owner_of(bucket))
                .key(to)
                .copy_source(format!("{bucket}/{from}"))
                .set_expected_source_bucket_owner(self.owner_of(bucket))
                .set_acl(self.acl.clone())
                .send()
                .await
                .map_err(|e| error("CopyObject", bucket, to, e))?;
            Ok(())
        }
        .boxed()
    }

    fn create_upload<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        content_type: &'a str,
        checksum: ChecksumAlgorithm,
    ) -> BoxFuture<'a, Result<Upload, StoreError>> {
        async move {
            let created = self
                .client
                .create_multipart_upload()
                .bucket(bucket)
                .set_expected_bucket_owner(self.owner_of(bucket))
                .key(key)
                .content_type(content_type)
                .set_acl(self.acl.clone())
                .checksum_algorithm(sdk_checksum(checksum))
                .send()
                .await
                .map_err(|e| error("CreateMultipartUpload", bucket, key, e))?;
            let id = created.upload_id().unwrap_or_default().to_owned();
            Ok(Upload { bucket: bucket.to_owned(), key: key.to_owned(), id, checksum })
        }
        .boxed()
    }

    fn upload_part<'a>(
        &'a self,
        upload: &'a Upload,
        number: i32,
        body: Vec<Bytes>,
        checksum: u64,
    ) -> BoxFuture<'a, Result<UploadedPart, StoreError>> {
        async move {
            let length: u64 = body.iter().map(|c| c.len() as u64).sum();
            // The body is the chunks in order, rebuilt from them if the SDK retries the request.
            let body = SdkBody::retryable(move || SdkBody::from_body_1_x(ChunkBody::new(body.clone())));
            // The checksum goes in a header, computed by the caller: S3 checks the part against it. (Naming the
            // algorithm alone is refused by S3 once the SDK only computes checksums S3 requires.)
            let checksum = upload.checksum.encode(checksum);
            let request = self
                .client
                .upload_part()
                .bucket(&upload.bucket)
                .set_expected_bucket_owner(self.owner_of(&upload.bucket))
                .key(&upload.key)
                .upload_id(&upload.id)
                .part_number(number)
                .content_length(length as i64)
                .checksum_algorithm(sdk_checksum(upload.checksum));
            let request = match upload.checksum {
                ChecksumAlgorithm::Crc32c => request.checksum_crc32_c(&checksum),
                ChecksumAlgorithm::Crc64Nvme => request.checksum_crc64_nvme(&checksum),
            };
            let out = request
                .body(ByteStream::new(body))
                .send()
                .await
                .map_err(|e| error("UploadPart", &upload.bucket, &upload.key, e))?;
            Ok(UploadedPart { number, etag: out.e_tag().map(str::to_owned), checksum })
        }
        .boxed()
    }

    fn complete_upload<'a>(
        &'a self,
        upload: &'a Upload,
        parts: Vec<UploadedPart>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let parts = parts
                .into_iter()
                .map(|part| {
                    let builder = CompletedPart::builder().part_number(part.number).set_e_tag(part.etag);
                    match upload.checksum {
                        ChecksumAlgorithm::Crc32c => builder.checksum_crc32_c(part.checksum),
                        ChecksumAlgorithm::Crc64Nvme => builder.checksum_crc64_nvme(part.checksum),
                    }
                    .build()
                })
                .collect();
            self.client
                .complete_multipart_upload()
                .bucket(&upload.bucket)
                .set_expected_bucket_owner(self.owner_of(&upload.bucket))
                .key(&upload.key)
                .upload_id(&upload.id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| error("CompleteMultipartUpload", &upload.bucket, &upload.key, e))?;
            Ok(())
        }
        .boxed()
    }

    fn abort_upload<'a>(&'a self, upload: &'a Upload) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(&upload.bucket)
                .set_expected_bucket_owner(self.owner_of(&upload.bucket))
                .key(&upload.key)
                .upload_id(&upload.id)
                .send()
                .await;
            match aborted {
                // Gone already: aborted by an earlier attempt whose answer was lost, or completed.
                Err(e) if e.as_service_error().and_then(|e| e.code()) == Some("NoSuchUpload") => Ok(()),
                Err(e) => Err(error("AbortMultipartUpload", &upload.bucket, &upload.key, e)),
                Ok(_) => Ok(()),
            }
        }
        .boxed()
    }
}

/// An HTTP body over a part's chunks, of exactly their length: the chunks are sent as they are, never copied
/// into one buffer.
struct ChunkBody {
    chunks: VecDeque<Bytes>,
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
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let next = self.chunks.pop_front();
        if let Some(chunk) = &next {
            self.remaining -= chunk.len() as u64;
        }
        Poll::Ready(next.map(|chunk| Ok(http_body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::error::ErrorMetadata;

    /// An S3 error with this code, as the SDK gives it.
    fn with_code(code: &str) -> StoreError {
        error("PutObject", "lake", "k", ErrorMetadata::builder().code(code).message("m").build())
    }

    #[test]
    fn codes_that_can_never_succeed_are_permanent_and_named_in_the_error() {
        for code in [
            "AccessDenied",
            "NoSuchBucket",
            "PermanentRedirect",
            "AuthorizationHeaderMalformed",
            "InvalidRequest",
            "KMS.DisabledException",
            "KMS.NotFoundException",
            "KMS.KMSInvalidStateException",
            "KMSAccessDenied",
        ] {
            let e = with_code(code);
            assert!(e.is_permanent(), "{code} should be permanent");
            assert!(e.to_string().contains(code), "{code} should be named: {e}");
        }
        for code in ["SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "NoSuchUpload"] {
            assert!(!with_code(code).is_permanent(), "{code} may pass");
        }
        for code in ["PreconditionFailed", "ConditionalRequestConflict"] {
            assert!(with_code(code).is_conflict(), "{code}: a conditional write lost");
        }
    }

    #[test]
    fn each_bucket_is_expected_to_belong_to_its_configured_account() {
        let client = Client::from_conf(aws_sdk_s3::Config::builder().behavior_version_latest().build());
        let store = S3Store::new(client.clone());
        assert_eq!(store.owner_of("zuora-raw"), None, "not checked unless configured");
        let store = S3Store::new(client)
            .with_expected_owner("111111111111")
            .with_bucket_owner("ophan-raw-zuora-increment-*", "222222222222")
            .with_bucket_owner("shared-ledger", "333333333333");
        assert_eq!(store.owner_of("zuora-raw").as_deref(), Some("111111111111"));
        assert_eq!(store.owner_of("ophan-raw-zuora-increment-account").as_deref(), Some("222222222222"));
        assert_eq!(store.owner_of("shared-ledger").as_deref(), Some("333333333333"));
        assert_eq!(store.owner_of("shared-ledger-2").as_deref(), Some("111111111111"), "a name is not a prefix");
    }

    #[test]
    fn conflict_codes_are_conflicts() {
        for code in ["PreconditionFailed", "ConditionalRequestConflict"] {
            assert!(with_code(code).is_conflict(), "{code}: a conditional write lost");
        }
    }
}
