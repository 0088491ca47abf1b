//! AWS SDK set-up shared by the SQS and S3 adapters: real AWS by default, a local server by `endpoint_url`.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use serde::{Deserialize, Serialize};

/// Where the AWS services are.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Region; when absent the SDK's usual chain decides (`AWS_REGION`, profile, instance metadata).
    #[serde(default)]
    pub region: Option<String>,
    /// A non-AWS endpoint for both services (moto server, LocalStack); absent for real AWS.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// An S3 endpoint of its own (Garage, s3s-fs), overriding `endpoint_url` for S3.
    #[serde(default)]
    pub s3_endpoint_url: Option<String>,
    /// An SQS endpoint of its own, overriding `endpoint_url` for SQS.
    #[serde(default)]
    pub sqs_endpoint_url: Option<String>,
    /// A local directory in place of S3: `s3://BUCKET/KEY` is the file `LOCAL_DIR/BUCKET/KEY` (the quick start's
    /// lake). Absent for S3.
    #[serde(default)]
    pub local_dir: Option<std::path::PathBuf>,
    /// A canned ACL set on every object written: `bucket-owner-full-control` when the buckets belong to another
    /// account (the old export's per-object buckets may), so that their owner can read what is written. Absent:
    /// no ACL (buckets with ACLs disabled).
    #[serde(default)]
    pub object_acl: Option<ObjectAcl>,
    /// The AWS account (12 digits) that owns every bucket the services use (the raw files', the ledger's): sent as
    /// `ExpectedBucketOwner` on every S3 call, so that a bucket of the same name deleted and re-created in another
    /// account is refused (403 AccessDenied, the job dead-lettered) instead of receiving billing data. Absent: not
    /// checked.
    #[serde(default)]
    pub expected_bucket_owner: Option<String>,
    /// Buckets owned by another account than `expected_bucket_owner`'s: bucket name (or a prefix ending in `*`,
    /// e.g. the old export's `ophan-raw-zuora-increment-*`) -> account id.
    #[serde(default)]
    pub bucket_owners: std::collections::BTreeMap<String, String>,
}

/// A canned ACL objects are written with: only the one that makes sense for files written into another account's
/// bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ObjectAcl {
    /// The bucket's owner may read and manage what is written.
    #[serde(rename = "bucket-owner-full-control")]
    BucketOwnerFullControl,
}

impl AwsConfig {
    /// The SDK configuration: credentials and region from the SDK's default chain.
    pub async fn load(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        loader.load().await
    }

    /// An S3 client. Against a local server it addresses buckets by path; checksums are computed only where an
    /// operation requires them, because local servers disagree on the SDK's default trailing checksums (the relay
    /// sets its own checksum algorithm explicitly on every multipart call).
    pub fn s3_client(&self, sdk: &SdkConfig) -> aws_sdk_s3::Client {
        let mut config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(self.endpoint_url.is_some() || self.s3_endpoint_url.is_some())
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(url) = &self.s3_endpoint_url {
            config = config.endpoint_url(url);
        }
        aws_sdk_s3::Client::from_conf(config.build())
    }

    /// The S3 store of this configuration.
    pub fn s3_store(&self, sdk: &SdkConfig) -> crate::store::S3Store {
        let mut store = crate::store::S3Store::new(self.s3_client(sdk));
        if let Some(owner) = &self.expected_bucket_owner {
            store = store.with_expected_owner(owner.clone());
        }
        for (pattern, owner) in &self.bucket_owners {
            store = store.with_bucket_owner(pattern.clone(), owner.clone());
        }
        match self.object_acl {
            Some(ObjectAcl::BucketOwnerFullControl) => {
                store.with_acl(aws_sdk_s3::types::ObjectCannedAcl::BucketOwnerFullControl)
            }
            None => store,
        }
    }

    /// An SQS client.
    pub fn sqs_client(&self, sdk: &SdkConfig) -> aws_sdk_sqs::Client {
        let mut config = aws_sdk_sqs::config::Builder::from(sdk);
        if let Some(url) = &self.sqs_endpoint_url {
            config = config.endpoint_url(url);
        }
        aws_sdk_sqs::Client::from_conf(config.build())
    }
}
