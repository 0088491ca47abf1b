//! [`ObjectStore`] on Amazon S3 (or any server speaking its protocol, such as moto).

use super::{ObjectStore, StoreError};
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;

/// S3 through one client.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
}

impl S3Store {
    /// A store on this client.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The client, for the multipart upload path.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn error(operation: &'static str, bucket: &str, key: &str, err: impl std::error::Error) -> StoreError {
    StoreError {
        operation,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        message: DisplayErrorContext(err).to_string(),
    }
}

impl ObjectStore for S3Store {
    fn put<'a>(&'a self, bucket: &'a str, key: &'a str, body: Bytes) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let content_type = if key.ends_with(".json") { "application/json" } else { "application/octet-stream" };
            self.client
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type(content_type)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| error("PutObject", bucket, key, e))?;
            Ok(())
        }
        .boxed()
    }

    fn get<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        async move {
            let out = match self.client.get_object().bucket(bucket).key(key).send().await {
                Ok(out) => out,
                Err(SdkError::ServiceError(e)) if matches!(e.err(), GetObjectError::NoSuchKey(_)) => return Ok(None),
                Err(e) => return Err(error("GetObject", bucket, key, e)),
            };
            let body = out.body.collect().await.map_err(|e| error("GetObject", bucket, key, e))?;
            Ok(Some(body.into_bytes()))
        }
        .boxed()
    }

    fn list<'a>(&'a self, bucket: &'a str, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        async move {
            let mut keys = Vec::new();
            let mut pages = self.client.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| error("ListObjectsV2", bucket, prefix, e))?;
                keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
            }
            keys.sort();
            Ok(keys)
        }
        .boxed()
    }
}
