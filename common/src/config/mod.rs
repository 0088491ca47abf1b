//! The configuration file shared by the producer and the consumer: one file describes one deployment.
//!
//! Loaded once at start-up from TOML, completed from the environment (secrets never live in the file), validated
//! with errors that name the field, and printed once with secrets masked. Environment variables are read here and
//! nowhere else.

use crate::aws::AwsConfig;
use crate::catalogue::Catalogue;
use crate::secret::Secret;
use crate::store::ChecksumAlgorithm;
use crate::zuora::ZuoraConfig;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The environment variable that supplies the Zuora client secret.
pub const CLIENT_SECRET_ENV: &str = "ZUORA_CLIENT_SECRET";

/// The environment variable that supplies `producer.notify_url`, whose path holds the notification route's secret
/// (the stack injects it from Secrets Manager into the tasks that submit jobs, and nowhere else).
pub const NOTIFY_URL_ENV: &str = "ZLE_NOTIFY_URL";

/// The environment variable that may hold the whole configuration as TOML (for containers, where a file is
/// awkward); used when no file is named.
pub const CONFIG_TOML_ENV: &str = "ZLE_CONFIG_TOML";

/// A deployment's configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Zuora tenant. `client_secret` may be left out of the file and given as `ZUORA_CLIENT_SECRET`.
    pub zuora: ZuoraConfig,
    /// The stateful AQuA session the daily increments continue.
    pub session: SessionConfig,
    /// Where AWS is.
    #[serde(default)]
    pub aws: AwsConfig,
    /// The three queues and their dead-letter queues.
    pub queues: QueuesConfig,
    /// Where the producer records submitted jobs.
    pub ledger: LedgerConfig,
    /// The object catalogue: a file, or `builtin:<name>` for one that ships in the binaries (`builtin:old-export`:
    /// the old export's queries, verbatim); the built-in default when absent.
    #[serde(default)]
    pub catalogue: Option<PathBuf>,
    /// The bucket of the raw files when the built-in catalogue is used (its own default is `zuora-raw`); a
    /// catalogue file names its buckets itself.
    #[serde(default)]
    pub raw_bucket: Option<String>,
    /// How full exports are split.
    #[serde(default)]
    pub full_export: FullExportConfig,
    /// Producer settings.
    #[serde(default)]
    pub producer: ProducerSettings,
    /// Consumer settings.
    #[serde(default)]
    pub consumer: ConsumerSettings,
    /// The table writer's settings (docs/tables.md); absent without a table writer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<TablesConfig>,
}

/// Where the table writer keeps one Delta table per object.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TablesConfig {
    /// `s3://BUCKET/PREFIX/`: the table of object `X` is at `PREFIX/X/` (with `aws.local_dir`, the directory
    /// `LOCAL_DIR/BUCKET/PREFIX/X`).
    pub location: String,
    /// An AWS Glue database to register each table in (as `x` for object `X`), so that Athena finds it by name;
    /// absent: no catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glue_database: Option<String>,
}

impl TablesConfig {
    /// The bucket and prefix (ending in `/`, or empty) of `location`.
    pub fn bucket_and_prefix(&self) -> Option<(&str, &str)> {
        let rest = self.location.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        (!bucket.is_empty() && (prefix.is_empty() || prefix.ends_with('/'))).then_some((bucket, prefix))
    }
}

/// Zuora's stateful session: partner + project identify it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Partner id, issued by Zuora Support.
    pub partner: String,
    /// Project; changing it makes Zuora reload every object in full.
    pub project: String,
    /// The AQuA request's `version`: `1.1` or `1.2` (both stateful; the old export sent `1.2`).
    #[serde(default = "default_version")]
    pub version: String,
    /// The `name` of every increment job (the old export's was `zuora-datalake-export`).
    #[serde(default = "default_increment_job_name")]
    pub increment_job_name: String,
    /// The files Zuora is asked for: `csv` (the old export's) or `gzip`, several times fewer bytes across the
    /// internet, and Zuora's 2,047 MB file limit then applies to the compressed size.
    #[serde(default)]
    pub file_format: FileFormat,
}

/// The `format` of the files of every job submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// Plain CSV.
    #[default]
    Csv,
    /// The CSV gzip-compressed (the body is the `.gz` file itself, not an HTTP content encoding).
    Gzip,
}

impl FileFormat {
    /// The request's `format` value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Gzip => "gzip",
        }
    }
}

fn default_version() -> String {
    "1.1".to_owned()
}

fn default_increment_job_name() -> String {
    "zle-increment".to_owned()
}

/// Queue URLs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueuesConfig {
    /// Export requests (schedule, operators).
    pub requests: String,
    /// Requests that could not be served, with their reason.
    pub requests_dlq: String,
    /// Submitted jobs for the consumers.
    pub jobs: String,
    /// Jobs that failed.
    pub jobs_dlq: String,
    /// Completion messages for the lake (FIFO).
    pub lake: String,
    /// Completions the lake could not process.
    pub lake_dlq: String,
    /// The same completions for the table writer (FIFO; docs/tables.md), sent beside the lake queue's; absent
    /// without a table writer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<String>,
    /// Completions the table writer could not apply, with their reason; with `tables`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables_dlq: Option<String>,
}

impl QueuesConfig {
    /// True when the queues live in process memory (`memory://NAME`): producer and consumers must then share one
    /// process, as in the quick start.
    pub fn in_memory(&self) -> bool {
        self.requests.starts_with(MEMORY_SCHEME)
    }
}

/// The producer's ledger of submitted jobs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// Bucket.
    pub bucket: String,
    /// Key prefix, ending in `/`.
    #[serde(default = "default_ledger_prefix")]
    pub prefix: String,
}

fn default_ledger_prefix() -> String {
    "zuora-lake-export/ledger/".to_owned()
}

/// Full exports are split into half-open `CreatedDate` windows, one job each, so no query meets Zuora's 3-hour
/// query limit or its 2,047 MB file limit.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FullExportConfig {
    /// The first window starts here (UTC midnight); nothing in the tenant is older.
    pub earliest: NaiveDate,
    /// Months of the first window, and the shortest window planned.
    pub window_months: u32,
    /// Records a window should hold: each window's successor is as long as this one times `window_rows` over its
    /// records, at most 8 times as long and never shorter than `window_months`.
    pub window_rows: u64,
}

impl Default for FullExportConfig {
    fn default() -> Self {
        #[allow(clippy::expect_used)]
        let earliest = NaiveDate::from_ymd_opt(2007, 1, 1).expect("a valid date");
        Self { earliest, window_months: 1, window_rows: 2_000_000 }
    }
}

impl FullExportConfig {
    /// The window after `[from, to)`, which held `records`, of an export that ends at `until`: longer while windows
    /// come back small (up to 8 times), shorter when they come back large (never below `window_months` of 28 days).
    pub fn next_window(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        records: u64,
        until: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        if to >= until {
            return None;
        }
        let span = (to - from).num_seconds().max(1) as f64;
        let factor = (self.window_rows as f64 / records.max(1) as f64).min(8.0);
        let shortest = f64::from(self.window_months.max(1)) * 28.0 * 86_400.0;
        let next = (span * factor).max(shortest).min(i64::MAX as f64 / 2.0) as i64;
        let end = to.checked_add_signed(chrono::TimeDelta::seconds(next)).map_or(until, |end| end.min(until));
        Some((to, end))
    }
}

/// Producer settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerSettings {
    /// Long-poll wait of the requests queue, in seconds (at most 20).
    pub wait_secs: u64,
    /// When Zuora is busy (too many concurrent jobs), the rest of a request is retried after this many seconds.
    pub busy_retry_secs: u64,
    /// `status` fails when an object's last increment is older than this many hours.
    pub stale_after_hours: u64,
    /// Zuora calls this URL when a job completes (AQuA's `notifyUrl`, set on every job), with `${JOBID}` and
    /// `${STATUS}` filled in; it must put the job id on the jobs queue with the message attribute `origin = notify`
    /// (the stack's notification route does). The consumers' polling stays the safety net. None: poll only. Its path
    /// holds the route's secret: usually given as `ZLE_NOTIFY_URL`, and printed as `***`.
    pub notify_url: Option<Secret>,
}

/// Zuora's limit on a `notifyUrl`'s length.
pub const MAX_NOTIFY_URL: usize = 4999;

impl Default for ProducerSettings {
    fn default() -> Self {
        Self { wait_secs: 20, busy_retry_secs: 300, stale_after_hours: 36, notify_url: None }
    }
}

/// A queue URL of this scheme names a queue in process memory, shared by everything built from one
/// [`crate::services::Services`].
pub const MEMORY_SCHEME: &str = "memory://";

/// How stored files are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionKind {
    /// As Zuora sent them.
    None,
    /// gzip members.
    Gzip,
    /// zstd frames.
    Zstd,
}

/// What becomes of a file Zuora sent gzip-compressed (`session.file_format = "gzip"`); its records are counted
/// and checked as it is decompressed on the way either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GzipDownloads {
    /// Stored as the `.gz` bytes Zuora sent: no compression CPU, the lake reads gzip.
    Keep,
    /// Stored as plain CSV (then compressed as `compression` says).
    Decompress,
}

/// Consumer settings. Peak memory of a consumer is about `part_pool_mib` plus a few MiB per job in flight,
/// whatever the size of the files (see docs/configuration.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerSettings {
    /// Jobs processed at once by one consumer process.
    pub jobs_in_flight: usize,
    /// First multipart part size, MiB (S3's minimum is 5).
    pub part_size_mib: u64,
    /// Largest part an unknown-length file grows to, MiB.
    pub max_part_size_mib: u64,
    /// Memory for part buffers, shared by the process, MiB; parts in flight = this / part size.
    pub part_pool_mib: u64,
    /// `CRC32C` or `CRC64NVME`: set on create, every part and complete.
    pub checksum: ChecksumAlgorithm,
    /// `none`, `gzip` or `zstd`: stored files are compressed in independent members, one per part-size chunk.
    pub compression: CompressionKind,
    /// Compression level (gzip 0-9, zstd 1-19); 1 when absent, the fast end.
    pub compression_level: Option<i32>,
    /// `keep` or `decompress`: what is stored of files Zuora sent gzip-compressed.
    pub gzip_downloads: GzipDownloads,
    /// Long-poll wait on the jobs queue, seconds (at most 20).
    pub wait_secs: u64,
    /// First delay before a job that is not finished is looked at again, seconds; it doubles each time.
    pub poll_delay_secs: u64,
    /// Longest such delay, seconds (SQS allows 900).
    pub max_poll_delay_secs: u64,
    /// A job not finished this long after submission fails, hours.
    pub job_deadline_hours: u64,
    /// Visibility of a job message while it is worked on, extended every third of it, seconds.
    pub visibility_secs: u64,
    /// Times a file is downloaded again after a broken transfer or a count mismatch before the job fails.
    pub file_attempts: u32,
    /// A file's transfer (download, upload, verification) gets this long, seconds, plus the time its bytes take
    /// at `file_min_kib_per_sec`; one that has not ended by then is abandoned and started again, as a broken one is.
    pub file_deadline_secs: u64,
    /// The slowest average rate a transfer may keep, KiB/s (a 2,047 MB file at 64 KiB/s gets about 9 h more).
    pub file_min_kib_per_sec: u64,
    /// A transfer that reads nothing from Zuora for this long is abandoned and started again, seconds: a stalled
    /// connection or store cannot hold a job for ever, and a slow file that keeps coming is not cut off.
    pub file_stall_secs: u64,
    /// On SIGTERM, in-flight files get this long to finish before their uploads are aborted, seconds.
    pub shutdown_grace_secs: u64,
    /// Write a CloudWatch embedded-metric-format line on stdout for every published file (`common::metrics`).
    pub emf_metrics: bool,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            jobs_in_flight: 2,
            part_size_mib: 8,
            max_part_size_mib: 64,
            part_pool_mib: 96,
            checksum: ChecksumAlgorithm::Crc32c,
            compression: CompressionKind::None,
            compression_level: None,
            gzip_downloads: GzipDownloads::Keep,
            wait_secs: 20,
            // A few quick looks, then one a minute: a finished job is heard of about 30 s after it ended at the
            // median (docs/benchmarks.md, the daily run).
            poll_delay_secs: 10,
            max_poll_delay_secs: 60,
            job_deadline_hours: 12,
            visibility_secs: 300,
            file_attempts: 3,
            file_deadline_secs: 3600,
            file_min_kib_per_sec: 64,
            file_stall_secs: 300,
            shutdown_grace_secs: 100,
            emf_metrics: true,
        }
    }
}

/// A configuration that cannot be used; the message names the field.
#[derive(Debug, thiserror::Error)]
#[error("configuration {origin}: {detail}")]
pub struct ConfigError {
    origin: String,
    detail: String,
}

impl ConfigError {
    /// A configuration a service cannot run with, though it is valid for others; `detail` names the field.
    pub fn unusable(detail: impl Into<String>) -> Self {
        Self { origin: "for this service".to_owned(), detail: detail.into() }
    }
}

/// The secrets given outside the configuration file, as environment variables.
struct EnvSecrets {
    /// `ZUORA_CLIENT_SECRET`.
    client_secret: Option<Secret>,
    /// `ZLE_NOTIFY_URL`.
    notify_url: Option<Secret>,
}

impl EnvSecrets {
    fn read() -> Self {
        let read = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty()).map(Secret::new);
        Self { client_secret: read(CLIENT_SECRET_ENV), notify_url: read(NOTIFY_URL_ENV) }
    }
}

impl Config {
    /// The configuration file at `path`, or else the TOML in `ZLE_CONFIG_TOML`.
    pub fn from_file_or_env(path: Option<&Path>) -> Result<Self, ConfigError> {
        if let Some(path) = path {
            return Self::load(path);
        }
        let text = std::env::var(CONFIG_TOML_ENV).map_err(|_| ConfigError {
            origin: "(none)".to_owned(),
            detail: format!("pass --config FILE, or set ZLE_CONFIG (a file) or {CONFIG_TOML_ENV} (the TOML itself)"),
        })?;
        Self::parse_with(&text, CONFIG_TOML_ENV, &EnvSecrets::read())
    }

    /// Reads, completes from the environment and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { origin: origin.clone(), detail: format!("cannot read: {e}") })?;
        Self::parse_with(&text, &origin, &EnvSecrets::read())
    }

    /// Parses TOML; `client_secret` replaces the file's `zuora.client_secret` when given.
    pub fn parse(text: &str, origin: &str, client_secret: Option<Secret>) -> Result<Self, ConfigError> {
        Self::parse_with(text, origin, &EnvSecrets { client_secret, notify_url: None })
    }

    /// Parses TOML completed by the secrets given outside the file.
    fn parse_with(text: &str, origin: &str, secrets: &EnvSecrets) -> Result<Self, ConfigError> {
        let fail = |detail: String| ConfigError { origin: origin.to_owned(), detail };
        let mut value: toml::Table = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
        if let Some(secret) = &secrets.client_secret
            && let Some(toml::Value::Table(zuora)) = value.get_mut("zuora")
        {
            zuora.insert("client_secret".into(), toml::Value::String(secret.expose().to_owned()));
        }
        if let Some(url) = &secrets.notify_url {
            let producer = value.entry("producer").or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(producer) = producer {
                producer.insert("notify_url".into(), toml::Value::String(url.expose().to_owned()));
            }
        }
        let config: Self = value.try_into().map_err(|e: toml::de::Error| {
            let detail = e.to_string();
            if detail.contains("client_secret") {
                fail(format!("{detail}\n(zuora.client_secret is usually given as {CLIENT_SECRET_ENV})"))
            } else {
                fail(detail)
            }
        })?;
        config.validate().map_err(fail)?;
        Ok(config)
    }

    /// What `check-config` prints (both binaries): the configuration as TOML, every default filled in and the
    /// client secret masked, then the objects of the catalogue it names, which must be usable with it.
    pub fn checked(&self) -> Result<String, ConfigError> {
        let catalogue =
            self.catalogue().map_err(|e| ConfigError { origin: "(catalogue)".to_owned(), detail: e.to_string() })?;
        let mut text = toml::to_string_pretty(self)
            .map_err(|e| ConfigError { origin: "(printed)".to_owned(), detail: e.to_string() })?;
        let names: Vec<&str> = catalogue.objects.iter().map(|o| o.name.as_str()).collect();
        text.push_str(&format!("# catalogue: {} objects: {}\n", names.len(), names.join(", ")));
        Ok(text)
    }

    /// The catalogue this configuration names, checked against the rest of it: an object's fixed `legacy_key`
    /// is read by the old export's readers as a plain CSV, so it cannot be a copy of a compressed file.
    pub fn catalogue(&self) -> Result<Catalogue, crate::catalogue::CatalogueError> {
        let catalogue = self.named_catalogue()?;
        let legacy: Vec<String> = catalogue
            .objects
            .iter()
            .filter_map(|o| o.target.legacy_key.as_ref().map(|key| format!("{} (legacy_key {key:?})", o.name)))
            .collect();
        let compressed = if self.consumer.compression != CompressionKind::None {
            Some("consumer.compression is not \"none\"; set it to \"none\"")
        } else if self.session.file_format == FileFormat::Gzip && self.consumer.gzip_downloads == GzipDownloads::Keep {
            Some(
                "session.file_format = \"gzip\" with consumer.gzip_downloads = \"keep\" stores Zuora's .gz files; \
                 set consumer.gzip_downloads = \"decompress\"",
            )
        } else {
            None
        };
        match compressed {
            Some(setting) if !legacy.is_empty() => {
                let origin = self.catalogue.as_ref().map_or("built-in".to_owned(), |p| p.display().to_string());
                Err(crate::catalogue::CatalogueError::new(
                    origin,
                    format!(
                        "{}: a fixed legacy_key holds a plain CSV for the old export's readers, but the stored \
                         files would be compressed: {setting}, or remove the legacy_key",
                        legacy.join(", ")
                    ),
                ))
            }
            _ => Ok(catalogue),
        }
    }

    fn named_catalogue(&self) -> Result<Catalogue, crate::catalogue::CatalogueError> {
        if let Some(name) = self.catalogue.as_ref().and_then(|p| p.to_str()).and_then(|p| p.strip_prefix("builtin:")) {
            return Catalogue::named(name);
        }
        let Some(path) = &self.catalogue else {
            let mut builtin = Catalogue::builtin();
            if let Some(bucket) = &self.raw_bucket {
                builtin.objects.iter_mut().for_each(|o| o.target.bucket = bucket.clone());
            }
            return Ok(builtin);
        };
        Catalogue::load(path)
    }
}

#[cfg(test)]
mod tests;
mod validate;
