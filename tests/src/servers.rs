//! The servers `tests/run.sh` starts: moto (SQS and S3) and Garage (a stricter S3), and fresh, uniquely named
//! queues and buckets on them.

use crate::unique;
use aws_sdk_sqs::types::QueueAttributeName;
use common::aws::AwsConfig;
use common::queue::SqsQueue;

/// The variable `tests/run.sh` sets to moto's address when it runs the real-protocol tier.
pub(crate) const AWS_ENDPOINT_VAR: &str = "ZLE_TEST_AWS_ENDPOINT";

/// The moto server that `tests/run.sh` started.
pub fn aws_config() -> AwsConfig {
    AwsConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(crate::required_env(AWS_ENDPOINT_VAR)),
        ..AwsConfig::default()
    }
}

/// The stricter S3 server (Garage) that `tests/run.sh` started: it checks part checksums, which moto does not.
pub(crate) fn strict_s3_config() -> AwsConfig {
    AwsConfig { endpoint_url: Some(crate::required_env("ZLE_TEST_STRICT_S3_ENDPOINT")), ..aws_config() }
}

/// AWS clients on the test server.
pub struct Aws {
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// S3.
    pub s3: aws_sdk_s3::Client,
}

impl Aws {
    /// Clients on the moto server of `tests/run.sh`.
    pub async fn connect() -> Self {
        let config = aws_config();
        let sdk = config.load().await;
        Self { sqs: config.sqs_client(&sdk), s3: config.s3_client(&sdk) }
    }

    /// S3 on the stricter server of `tests/run.sh` (SQS stays on moto).
    pub async fn connect_strict() -> Self {
        let (moto, strict) = (aws_config(), strict_s3_config());
        Self { sqs: moto.sqs_client(&moto.load().await), s3: strict.s3_client(&strict.load().await) }
    }

    /// A new queue with a dead-letter queue that takes messages received `max_receives` times, both hiding a
    /// received message for `visibility_secs` by default.
    pub async fn queue_with_dlq(
        &self,
        prefix: &str,
        max_receives: u32,
        fifo: bool,
        visibility_secs: u32,
    ) -> (SqsQueue, SqsQueue) {
        let suffix = if fifo { ".fifo" } else { "" };
        let dlq_name = format!("{}-dlq{suffix}", unique(prefix));
        let dlq = SqsQueue::new(self.sqs.clone(), self.create_queue(&dlq_name, fifo, visibility_secs, None).await);
        let policy = serde_json::json!({"deadLetterTargetArn": dlq.arn().await.expect("dlq arn"),
                                        "maxReceiveCount": max_receives.to_string()});
        let name = format!("{}{suffix}", unique(prefix));
        let url = self.create_queue(&name, fifo, visibility_secs, Some(policy.to_string())).await;
        (SqsQueue::new(self.sqs.clone(), url), dlq)
    }

    async fn create_queue(&self, name: &str, fifo: bool, visibility_secs: u32, redrive: Option<String>) -> String {
        let mut request = self
            .sqs
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::VisibilityTimeout, visibility_secs.to_string());
        if fifo {
            request = request.attributes(QueueAttributeName::FifoQueue, "true");
        }
        if let Some(policy) = redrive {
            request = request.attributes(QueueAttributeName::RedrivePolicy, policy);
        }
        request.send().await.expect("create queue").queue_url().expect("queue url").to_owned()
    }

    /// A new, empty bucket.
    pub async fn bucket(&self, prefix: &str) -> String {
        let name = unique(prefix);
        self.s3.create_bucket().bucket(&name).send().await.expect("create bucket");
        name
    }

    /// Multipart uploads neither completed nor aborted in `bucket`.
    pub async fn open_uploads(&self, bucket: &str) -> usize {
        let out = self.s3.list_multipart_uploads().bucket(bucket).send().await.expect("list multipart uploads");
        out.uploads().len()
    }
}

/// Fresh queues and a bucket on the moto server, and the configuration pointing at them and at a simulator.
pub struct AwsResources {
    /// AWS clients.
    pub aws: Aws,
    /// Requests queue and its DLQ.
    pub requests: (SqsQueue, SqsQueue),
    /// Jobs queue and its DLQ.
    pub jobs: (SqsQueue, SqsQueue),
    /// Lake queue (FIFO) and its DLQ.
    pub lake: (SqsQueue, SqsQueue),
    /// Bucket for the ledger and the lake.
    pub bucket: String,
    /// The configuration as TOML (with the client secret in it).
    pub config_text: String,
}

impl AwsResources {
    /// Creates them for a simulator at `base_url`, the queues hiding a received message for `visibility_secs`; the
    /// configuration's catalogue file is written in `dir`.
    pub async fn provision(base_url: &str, visibility_secs: u32, dir: &std::path::Path) -> Self {
        let aws = Aws::connect().await;
        let requests = aws.queue_with_dlq("requests", 5, false, visibility_secs).await;
        let jobs = aws.queue_with_dlq("jobs", 5, false, visibility_secs).await;
        let lake = aws.queue_with_dlq("lake", 5, true, visibility_secs).await;
        let bucket = aws.bucket("lake").await;
        let urls = [&requests, &jobs, &lake].map(|(queue, dlq)| [queue.url().to_owned(), dlq.url().to_owned()]);
        let endpoint = aws_config().endpoint_url.unwrap_or_default();
        let aws_section = format!("region = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n");
        let config_text = crate::config::config_text(base_url, &urls.concat(), &bucket, &aws_section, dir);
        Self { aws, requests, jobs, lake, bucket, config_text }
    }
}
