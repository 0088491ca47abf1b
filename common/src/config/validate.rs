//! Checks of a parsed configuration that its types cannot express; each error names the field.

use super::{CompressionKind, Config, FileFormat, GzipDownloads, MAX_NOTIFY_URL, MEMORY_SCHEME};

impl Config {
    /// Every check, section by section.
    pub(super) fn validate(&self) -> Result<(), String> {
        self.zuora.validate()?;
        self.validate_session()?;
        self.validate_queues()?;
        self.validate_tables_and_buckets()?;
        self.validate_ledger_and_producer()?;
        self.validate_consumer()
    }

    /// The stateful session: its names and AQuA version.
    fn validate_session(&self) -> Result<(), String> {
        let session = &self.session;
        for (field, value) in [
            ("session.partner", &session.partner),
            ("session.project", &session.project),
            ("session.increment_job_name", &session.increment_job_name),
        ] {
            if value.trim().is_empty() {
                return Err(format!("{field}: must not be empty"));
            }
        }
        if !["1.1", "1.2"].contains(&session.version.as_str()) {
            return Err(format!("session.version: {:?} is not a stateful AQuA version (1.1 or 1.2)", session.version));
        }
        Ok(())
    }

    /// Queue URLs: all in memory or none; the lake and tables queues FIFO.
    fn validate_queues(&self) -> Result<(), String> {
        let q = &self.queues;
        if q.tables.is_some() != q.tables_dlq.is_some() {
            return Err("queues.tables_dlq: queues.tables and queues.tables_dlq go together".into());
        }
        let tables = [("queues.tables", &q.tables), ("queues.tables_dlq", &q.tables_dlq)];
        for (field, url) in [
            ("queues.requests", &q.requests),
            ("queues.requests_dlq", &q.requests_dlq),
            ("queues.jobs", &q.jobs),
            ("queues.jobs_dlq", &q.jobs_dlq),
            ("queues.lake", &q.lake),
            ("queues.lake_dlq", &q.lake_dlq),
        ]
        .into_iter()
        .chain(tables.into_iter().filter_map(|(field, url)| Some((field, url.as_ref()?))))
        {
            if !(url.starts_with("https://") || url.starts_with("http://") || url.starts_with(MEMORY_SCHEME)) {
                return Err(format!("{field}: expected a queue URL, got {url:?}"));
            }
            if url.starts_with(MEMORY_SCHEME) != q.in_memory() {
                return Err(format!(
                    "{field}: the queues are all {MEMORY_SCHEME} (one process) or none, got {url:?} next to {:?}",
                    q.requests
                ));
            }
        }
        for (field, url) in [("queues.lake", Some(&q.lake)), ("queues.tables", q.tables.as_ref())] {
            if let Some(url) = url
                && !url.ends_with(".fifo")
            {
                return Err(format!(
                    "{field}: must be a FIFO queue (URL ending in .fifo) for deduplication, got {url:?}"
                ));
            }
        }
        Ok(())
    }

    /// The tables' location and Glue database, the raw bucket, the buckets' owners.
    fn validate_tables_and_buckets(&self) -> Result<(), String> {
        if let Some(tables) = &self.tables
            && tables.bucket_and_prefix().is_none()
        {
            return Err(format!("tables.location: s3://BUCKET/ or s3://BUCKET/PREFIX/, got {:?}", tables.location));
        }
        if let Some(database) = self.tables.as_ref().and_then(|t| t.glue_database.as_ref())
            && (database.is_empty()
                || database.len() > 255
                || !database.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
        {
            return Err(format!(
                "tables.glue_database: lower-case letters, digits and underscores (Athena's names), got {database:?}"
            ));
        }
        if self.raw_bucket.is_some() && self.catalogue.is_some() {
            return Err("raw_bucket: only with the built-in catalogue (a catalogue file names its own buckets)".into());
        }
        if self.raw_bucket.as_deref().is_some_and(|b| b.trim().is_empty()) {
            return Err("raw_bucket: must not be empty".to_owned());
        }
        let account = |id: &str| id.len() == 12 && id.chars().all(|c| c.is_ascii_digit());
        if let Some(owner) = self.aws.expected_bucket_owner.as_deref().filter(|o| !account(o)) {
            return Err(format!("aws.expected_bucket_owner: an AWS account id is 12 digits, got {owner:?}"));
        }
        if let Some((bucket, owner)) = self.aws.bucket_owners.iter().find(|(_, o)| !account(o)) {
            return Err(format!("aws.bucket_owners.{bucket}: an AWS account id is 12 digits, got {owner:?}"));
        }
        Ok(())
    }

    /// The ledger's place, the producer's notification URL and wait, full exports' windows.
    fn validate_ledger_and_producer(&self) -> Result<(), String> {
        if self.ledger.bucket.trim().is_empty() {
            return Err("ledger.bucket: must not be empty".to_owned());
        }
        if !self.ledger.prefix.is_empty() && !self.ledger.prefix.ends_with('/') {
            return Err(format!("ledger.prefix: must end with /, got {:?}", self.ledger.prefix));
        }
        if let Some(url) = &self.producer.notify_url {
            let url = url.expose();
            let web = url.starts_with("https://") || url.starts_with("http://");
            if !web || !url.contains("${JOBID}") || url.len() > MAX_NOTIFY_URL {
                // Not quoted: its path holds the route's secret.
                return Err(format!(
                    "producer.notify_url: an http(s) URL of at most {MAX_NOTIFY_URL} characters holding ${{JOBID}} \
                     (the value given, not shown: it holds a secret, has {} characters)",
                    url.len()
                ));
            }
        }
        if self.full_export.window_months == 0 {
            return Err("full_export.window_months: must be at least 1".to_owned());
        }
        if self.full_export.window_rows == 0 {
            return Err("full_export.window_rows: must be at least 1".to_owned());
        }
        if self.producer.wait_secs > 20 {
            return Err(format!("producer.wait_secs: SQS waits at most 20 seconds, got {}", self.producer.wait_secs));
        }
        Ok(())
    }

    /// The consumer's parts, compression, deadlines and waits.
    fn validate_consumer(&self) -> Result<(), String> {
        let c = &self.consumer;
        if c.part_size_mib < 5 {
            return Err(format!("consumer.part_size_mib: S3 parts are at least 5 MiB, got {}", c.part_size_mib));
        }
        if c.part_pool_mib < c.part_size_mib {
            return Err(format!("consumer.part_pool_mib: must hold at least one part ({} MiB)", c.part_size_mib));
        }
        if c.max_part_size_mib < c.part_size_mib {
            return Err("consumer.max_part_size_mib: must be at least consumer.part_size_mib".to_owned());
        }
        if c.compression != CompressionKind::None && c.part_pool_mib < 2 * c.part_size_mib {
            return Err("consumer.part_pool_mib: compression needs room for at least two parts".to_owned());
        }
        if self.session.file_format == FileFormat::Gzip
            && c.gzip_downloads == GzipDownloads::Keep
            && c.compression != CompressionKind::None
        {
            return Err(
                "consumer.compression: gzip files from Zuora are stored as they came (consumer.gzip_downloads \
                 = \"keep\"); set compression = \"none\", or gzip_downloads = \"decompress\" to compress them again"
                    .to_owned(),
            );
        }
        for (field, value) in [
            ("consumer.file_deadline_secs", c.file_deadline_secs),
            ("consumer.file_min_kib_per_sec", c.file_min_kib_per_sec),
            ("consumer.file_stall_secs", c.file_stall_secs),
        ] {
            if value == 0 {
                return Err(format!("{field}: must be at least 1"));
            }
        }
        if c.jobs_in_flight == 0 || c.file_attempts == 0 {
            return Err("consumer.jobs_in_flight and consumer.file_attempts: must be at least 1".to_owned());
        }
        if c.wait_secs > 20 || c.max_poll_delay_secs > 900 {
            return Err(
                "consumer.wait_secs (at most 20) or consumer.max_poll_delay_secs (at most 900): too large".to_owned()
            );
        }
        Ok(())
    }
}
