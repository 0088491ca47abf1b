//! Shared harness of the tests that cross process boundaries: where the tools `tests/run.sh` installs and starts
//! are, and fresh, uniquely named queues and buckets on the moto server it runs.

pub mod stores;

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
    AwsConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(required_env("ZLE_TEST_AWS_ENDPOINT")),
        ..AwsConfig::default()
    }
}

/// The stricter S3 server (Garage) that `tests/run.sh` started: it checks part checksums, which moto does not.
pub fn strict_s3_config() -> AwsConfig {
    AwsConfig { endpoint_url: Some(required_env("ZLE_TEST_STRICT_S3_ENDPOINT")), ..aws_config() }
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with ./tests/run.sh, which installs and starts what these tests need")
    })
}

/// A binary of the workspace, built by `cargo test --workspace` next to the test executables.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target/PROFILE/deps").join(name);
    assert!(path.exists(), "{}: not built; run the suite with ./tests/run.sh (cargo test --workspace)", path.display());
    path
}

/// A child process killed when the test ends, whatever happens.
pub struct Process(pub std::process::Child);

impl Process {
    /// Starts `command` with its stdout and stderr in the file `log`.
    pub fn start(mut command: std::process::Command, log: &std::path::Path) -> Self {
        let log = std::fs::File::create(log).expect("the log file");
        let child = command.stdout(log.try_clone().expect("the log file")).stderr(log).spawn().expect("it starts");
        Self(child)
    }

    /// Stops it with SIGTERM, as ECS does; its exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs").success());
        self.0.wait().expect("it ends")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

    /// S3 on the stricter server of `tests/run.sh` (SQS stays on moto).
    pub async fn connect_strict() -> Self {
        let (moto, strict) = (aws_config(), strict_s3_config());
        Self { sqs: moto.sqs_client(&moto.load().await), s3: strict.s3_client(&strict.load().await) }
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
        let mut request =
            self.sqs.create_queue().queue_name(name).attributes(QueueAttributeName::VisibilityTimeout, "30");
        if fifo {
            request = request.attributes(QueueAttributeName::FifoQueue, "true");
        }
        if let Some(policy) = redrive_policy {
            request = request.attributes(QueueAttributeName::RedrivePolicy, policy);
        }
        request.send().await.expect("create queue").queue_url().expect("queue url").to_owned()
    }

    /// Changes a queue's default visibility timeout.
    pub async fn set_visibility_timeout(&self, queue: &SqsQueue, seconds: u32) {
        self.sqs
            .set_queue_attributes()
            .queue_url(queue.url())
            .attributes(QueueAttributeName::VisibilityTimeout, seconds.to_string())
            .send()
            .await
            .expect("set visibility timeout");
    }

    /// A new, empty bucket.
    pub async fn bucket(&self, prefix: &str) -> String {
        let name = unique(prefix);
        self.s3.create_bucket().bucket(&name).send().await.expect("create bucket");
        name
    }
}

/// Fresh queues, a bucket and the configuration pointing at them and at a simulator, on the moto server.
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
    /// Creates them for a simulator at `base_url`.
    pub async fn provision(base_url: &str) -> Self {
        let aws = Aws::connect().await;
        let requests = aws.queue_with_dlq("requests", 5, false).await;
        let jobs = aws.queue_with_dlq("jobs", 5, false).await;
        let lake = aws.queue_with_dlq("lake", 5, true).await;
        let bucket = aws.bucket("lake").await;
        let dir = std::env::temp_dir().join(unique("deployment"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let catalogue = dir.join("catalogue.toml");
        let builtin = include_str!("../../common/catalogue.toml")
            .replace("bucket = \"zuora-raw\"", &format!("bucket = \"{bucket}\""));
        std::fs::write(&catalogue, builtin).expect("write catalogue");
        let config_text = format!(
            r#"
catalogue = "{catalogue}"

[zuora]
base_url = "{base_url}"
client_id = "0b9e5d6c-1f3a-4e2b-9c8d-7a6f5e4d3c2b"
client_secret = "sim-client-secret"
data_center = "us"

[zuora.retry]
max_attempts = 4
base_delay_ms = 10
max_delay_ms = 100
max_retry_after_secs = 2

[session]
partner = "test-partner"
project = "{project}"

[aws]
region = "us-east-1"
endpoint_url = "{endpoint}"

[queues]
requests = "{requests}"
requests_dlq = "{requests_dlq}"
jobs = "{jobs}"
jobs_dlq = "{jobs_dlq}"
lake = "{lake}"
lake_dlq = "{lake_dlq}"

[ledger]
bucket = "{bucket}"

[full_export]
earliest = "2020-01-01"
window_months = 6

[producer]
wait_secs = 1
busy_retry_secs = 1

[consumer]
jobs_in_flight = 2
part_size_mib = 5
part_pool_mib = 16
wait_secs = 1
poll_delay_secs = 1
max_poll_delay_secs = 2
visibility_secs = 30
file_attempts = 2
shutdown_grace_secs = 5
"#,
            catalogue = catalogue.display(),
            base_url = base_url,
            project = unique("project"),
            endpoint = aws_config().endpoint_url.unwrap_or_default(),
            requests = requests.0.url(),
            requests_dlq = requests.1.url(),
            jobs = jobs.0.url(),
            jobs_dlq = jobs.1.url(),
            lake = lake.0.url(),
            lake_dlq = lake.1.url(),
        );
        Self { aws, requests, jobs, lake, bucket, config_text }
    }

    /// The configuration, parsed.
    pub fn config(&self) -> common::config::Config {
        common::config::Config::parse(&self.config_text, "test deployment", None).expect("test configuration is valid")
    }

    /// The services the configuration names (queues and store on the moto server).
    pub async fn services(&self) -> common::services::Services {
        common::services::Services::connect(&self.config()).await
    }

    /// The configuration written to a file in `dir`.
    pub fn config_file(&self, dir: &std::path::Path) -> PathBuf {
        let path = dir.join("config.toml");
        std::fs::write(&path, &self.config_text).expect("write config");
        path
    }

    /// Every message now on a queue, received and deleted.
    pub async fn drain(queue: &SqsQueue) -> Vec<common::queue::ReceivedMessage> {
        use common::queue::Queue;
        let mut all = Vec::new();
        loop {
            let batch = queue.receive(10, std::time::Duration::from_secs(1)).await.expect("receive");
            if batch.is_empty() {
                return all;
            }
            for message in batch {
                queue.delete(&message.receipt).await.expect("delete");
                all.push(message);
            }
        }
    }
}

/// A whole deployment on the test servers: the simulator in-process, and the queues, bucket and configuration of
/// [`AwsResources`] (reached through it: `d.jobs`, `d.config_text`).
pub struct Deployment {
    /// The AQuA simulator.
    pub sim: zuora_sim::RunningSim,
    /// Queues, bucket, configuration.
    pub resources: AwsResources,
}

impl std::ops::Deref for Deployment {
    type Target = AwsResources;

    fn deref(&self) -> &AwsResources {
        &self.resources
    }
}

impl Deployment {
    /// Starts a simulator tuned by `tune` and creates fresh queues and a bucket.
    pub async fn start(tune: impl FnOnce(&mut zuora_sim::SimConfig)) -> Self {
        let mut sim_config = zuora_sim::SimConfig::default();
        sim_config.settings.job_execution_secs = 0.0;
        tune(&mut sim_config);
        let sim = zuora_sim::Simulator::start(sim_config).await.expect("simulator starts");
        let resources = AwsResources::provision(&sim.base_url()).await;
        Self { sim, resources }
    }
}
