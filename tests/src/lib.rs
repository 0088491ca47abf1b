//! Shared harness of the tests that cross process boundaries: where the tools `tests/run.sh` installs and starts
//! are, and fresh, uniquely named queues and buckets on the moto server it runs.

use aws_sdk_sqs::types::QueueAttributeName;
use common::aws::AwsConfig;
use common::queue::SqsQueue;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// The Python interpreter of the test venv (with moto and zuora-sdk), as exported by `tests/run.sh`.
pub fn test_python() -> PathBuf {
    PathBuf::from(required_env("ZLE_TEST_PYTHON"))
}

/// A script or fixture under `tests/`.
pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The moto server that `tests/run.sh` started.
pub fn aws_config() -> AwsConfig {
    AwsConfig { region: Some("us-east-1".into()), endpoint_url: Some(required_env("ZLE_TEST_AWS_ENDPOINT")) }
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with ./tests/run.sh, which installs and starts what these tests need")
    })
}

/// A name no other test (or earlier run against the same server) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{}", nanos % 1_000_000_000_000, NEXT.fetch_add(1, Ordering::SeqCst))
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

    /// A new queue with a dead-letter queue that takes messages received `max_receives` times.
    pub async fn queue_with_dlq(&self, prefix: &str, max_receives: u32, fifo: bool) -> (SqsQueue, SqsQueue) {
        let suffix = if fifo { ".fifo" } else { "" };
        let dlq_url = self.create_queue(&format!("{}-dlq{suffix}", unique(prefix)), fifo, None).await;
        let dlq = SqsQueue::new(self.sqs.clone(), &dlq_url);
        let policy = serde_json::json!({"deadLetterTargetArn": dlq.arn().await.expect("dlq arn"),
                                        "maxReceiveCount": max_receives.to_string()});
        let url = self.create_queue(&format!("{}{suffix}", unique(prefix)), fifo, Some(policy.to_string())).await;
        (SqsQueue::new(self.sqs.clone(), url), dlq)
    }

    async fn create_queue(&self, name: &str, fifo: bool, redrive_policy: Option<String>) -> String {
        let mut request = self.sqs.create_queue().queue_name(name).attributes(QueueAttributeName::VisibilityTimeout, "30");
        if fifo {
            request = request.attributes(QueueAttributeName::FifoQueue, "true");
        }
        if let Some(policy) = redrive_policy {
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
}
