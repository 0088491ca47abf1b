//! Tables on S3. delta-rs commits a table's version `N` by writing `_delta_log/N.json` only if it does not exist
//! yet; on S3 that is a `PutObject` with `If-None-Match: *`, which S3 has honoured since August 2024, so two writers
//! committing the same version cannot both win and no lock table (DynamoDB) is needed. This module gives delta-rs
//! the `s3://` scheme with exactly that: `object_store`'s S3 client, whose conditional put is `If-None-Match`, and
//! delta-rs's own default log store, which commits through it.

use common::aws::AwsConfig;
use deltalake::logstore::object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use deltalake::logstore::object_store::path::Path;
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore, logstore_factories,
    object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError};
use std::collections::HashMap;
use std::sync::{Arc, Once};
use url::Url;

/// Gives delta-rs the `s3://` scheme (once per process; later calls do nothing).
pub fn register() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        let scheme = Url::parse("s3://").expect("a URL");
        object_store_factories().insert(scheme.clone(), Arc::new(S3));
        logstore_factories().insert(scheme, Arc::new(S3));
    });
}

/// The storage options of a configuration's S3: its endpoint (a local server's), region and whether plain HTTP is
/// allowed. Credentials come from the environment as for the SDK: variables, the ECS task role, instance metadata.
pub fn storage_options(aws: &AwsConfig) -> HashMap<String, String> {
    let mut options = HashMap::new();
    if let Some(region) = &aws.region {
        options.insert("aws_region".to_owned(), region.clone());
    }
    if let Some(endpoint) = aws.s3_endpoint_url.as_ref().or(aws.endpoint_url.as_ref()) {
        options.insert("aws_endpoint".to_owned(), endpoint.clone());
        options.insert("aws_allow_http".to_owned(), endpoint.starts_with("http://").to_string());
        options.insert("aws_virtual_hosted_style_request".to_owned(), "false".to_owned());
    }
    options
}

/// The `s3://` factories.
#[derive(Debug)]
struct S3;

impl ObjectStoreFactory for S3 {
    fn parse_url_opts(&self, url: &Url, config: &StorageConfig) -> DeltaResult<(ObjectStoreRef, Path)> {
        let bucket = url.host_str().ok_or_else(|| DeltaTableError::InvalidTableLocation(url.to_string()))?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        for (key, value) in config.raw() {
            if let Ok(key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                builder = builder.with_config(key, value);
            }
        }
        let store: ObjectStoreRef = Arc::new(builder.build()?);
        Ok((store, Path::from_url_path(url.path())?))
    }
}

impl LogStoreFactory for S3 {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(prefixed_store, root_store, location, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_server_is_addressed_by_path_over_plain_http_and_real_s3_by_the_sdk_defaults() {
        let local = AwsConfig { endpoint_url: Some("http://127.0.0.1:5000".into()), ..AwsConfig::default() };
        let options = storage_options(&local);
        assert_eq!(options["aws_endpoint"], "http://127.0.0.1:5000");
        assert_eq!(options["aws_allow_http"], "true");
        assert_eq!(options["aws_virtual_hosted_style_request"], "false");
        let aws = AwsConfig { region: Some("eu-west-1".into()), ..AwsConfig::default() };
        assert_eq!(storage_options(&aws), HashMap::from([("aws_region".to_owned(), "eu-west-1".to_owned())]));
    }
}
