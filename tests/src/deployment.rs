//! A whole deployment for the service tests, on the tier's back end: SQS and S3 on the servers `tests/run.sh`
//! starts when it says where they are (the real-protocol tier), otherwise queues in memory and a local-directory
//! store (`cargo test` on a bare checkout). The tests' bodies are the same on both.

use crate::config::config_text;
use crate::servers::{AWS_ENDPOINT_VAR, Aws, AwsResources};
use crate::{Scratch, unique};
use bytes::Bytes;
use common::queue::{Queue, ReceivedMessage};
use common::services::{Queues, Services};
use common::store::{LocalStore, ObjectStore, S3Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// True when this run has the servers of `tests/run.sh` (the real-protocol tier).
fn on_servers() -> bool {
    std::env::var_os(AWS_ENDPOINT_VAR).is_some()
}

/// A fresh, empty bucket on the tier's object store.
pub struct Bucket {
    /// Its name.
    pub name: String,
    store: Arc<dyn ObjectStore>,
    place: Place,
    /// The local store's directory when the bucket has one of its own: removed when the bucket is dropped.
    _scratch: Option<Scratch>,
}

/// Where a bucket's objects are.
enum Place {
    Server(Aws),
    Directory(LocalStore),
}

impl Bucket {
    /// A new bucket: on moto in the real-protocol tier, otherwise a directory of a new local store.
    pub async fn create(prefix: &str) -> Self {
        if on_servers() {
            Self::on_server(Aws::connect().await, prefix).await
        } else {
            let scratch = Scratch::new("store");
            Self::in_directory(LocalStore::new(scratch.path()), unique(prefix), Some(scratch))
        }
    }

    /// A new bucket on Garage, the stricter S3 server (real-protocol tier only).
    pub async fn create_strict(prefix: &str) -> Self {
        Self::on_server(Aws::connect_strict().await, prefix).await
    }

    async fn on_server(aws: Aws, prefix: &str) -> Self {
        let name = aws.bucket(prefix).await;
        Self::existing_on_server(aws, name)
    }

    fn existing_on_server(aws: Aws, name: String) -> Self {
        Self { name, store: Arc::new(S3Store::new(aws.s3.clone())), place: Place::Server(aws), _scratch: None }
    }

    fn in_directory(store: LocalStore, name: String, scratch: Option<Scratch>) -> Self {
        std::fs::create_dir_all(store.root().join(&name)).expect("the bucket's directory");
        Self { name, store: Arc::new(store.clone()), place: Place::Directory(store), _scratch: scratch }
    }

    /// The object store it is on, as the services use it.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The keys under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        self.store.list(&self.name, prefix).await.expect("list")
    }

    /// An object's bytes, if it exists.
    pub async fn get(&self, key: &str) -> Option<Bytes> {
        self.store.get(&self.name, key).await.expect("get")
    }

    /// An object's bytes; it must exist.
    pub async fn object(&self, key: &str) -> Bytes {
        self.get(key).await.unwrap_or_else(|| panic!("s3://{}/{key} does not exist", self.name))
    }

    /// The records of a stored CSV object, by an independent RFC 4180 parser.
    pub async fn records_in(&self, key: &str) -> u64 {
        let body = self.object(key).await;
        csv::Reader::from_reader(body.as_ref()).records().try_fold(0, |n, r| r.map(|_| n + 1)).expect("valid CSV")
    }

    /// Deletes an object behind the services' back, as a lake that lost a file would.
    pub async fn remove(&self, key: &str) {
        match &self.place {
            Place::Server(aws) => {
                aws.s3.delete_object().bucket(&self.name).key(key).send().await.expect("delete");
            }
            Place::Directory(store) => std::fs::remove_file(store.root().join(&self.name).join(key)).expect("delete"),
        }
    }

    /// Multipart uploads neither completed nor aborted.
    pub async fn open_uploads(&self) -> usize {
        match &self.place {
            Place::Server(aws) => aws.open_uploads(&self.name).await,
            Place::Directory(store) => store.open_uploads(),
        }
    }

    /// Ends every open multipart upload behind its writer's back, as a lifecycle rule would.
    pub async fn abort_every_upload(&self) {
        match &self.place {
            Place::Server(aws) => {
                let uploads = aws.s3.list_multipart_uploads().bucket(&self.name).send().await.expect("list uploads");
                for upload in uploads.uploads() {
                    let request = aws.s3.abort_multipart_upload().bucket(&self.name);
                    let request = request.key(upload.key().unwrap_or_default());
                    request.upload_id(upload.upload_id().unwrap_or_default()).send().await.expect("abort");
                }
            }
            Place::Directory(store) => {
                let _ = std::fs::remove_dir_all(store.root().join(".uploads"));
            }
        }
    }
}

/// Every message now on a queue, received and deleted (an empty receive waits a second for stragglers).
pub async fn drain(queue: &dyn Queue) -> Vec<ReceivedMessage> {
    let mut all = Vec::new();
    loop {
        let batch = queue.receive(10, Duration::from_secs(1)).await.expect("receive");
        if batch.is_empty() {
            return all;
        }
        for message in batch {
            queue.delete(&message.receipt).await.expect("delete");
            all.push(message);
        }
    }
}

/// A whole deployment: the simulator in-process, the six queues, a bucket for the ledger and the lake, and the
/// configuration naming them, on the tier's back end.
pub struct Deployment {
    /// The AQuA simulator.
    pub sim: zuora_sim::RunningSim,
    /// The bucket of the ledger and of every object in the catalogue.
    pub bucket: Bucket,
    /// The configuration as TOML (with the client secret in it).
    pub config_text: String,
    services: Services,
    /// The catalogue file, and the local store in the in-memory tier: removed when the deployment is dropped.
    scratch: Scratch,
}

impl Deployment {
    /// Starts a simulator tuned by `tune`, and fresh queues and a bucket.
    pub async fn start(tune: impl FnOnce(&mut zuora_sim::SimConfig)) -> Self {
        Self::start_with_visibility(30, tune).await
    }

    /// As [`Deployment::start`], the queues hiding a received message for `visibility_secs` by default.
    pub async fn start_with_visibility(visibility_secs: u32, tune: impl FnOnce(&mut zuora_sim::SimConfig)) -> Self {
        let mut sim_config = zuora_sim::SimConfig::default();
        sim_config.settings.job_execution_secs = 0.0;
        tune(&mut sim_config);
        let sim = zuora_sim::Simulator::start(sim_config).await.expect("simulator starts");
        let scratch = Scratch::new("deployment");
        if on_servers() {
            let resources = AwsResources::provision(&sim.base_url(), visibility_secs, scratch.path()).await;
            let bucket = Bucket::existing_on_server(resources.aws, resources.bucket);
            let config_text = resources.config_text;
            let services = Services::connect(&parse(&config_text)).await;
            return Self { sim, bucket, config_text, services, scratch };
        }
        let lake = scratch.path().join("lake");
        let bucket = Bucket::in_directory(LocalStore::new(&lake), unique("lake"), None);
        let urls = ["requests", "requests-dlq", "jobs", "jobs-dlq", "lake.fifo", "lake-dlq.fifo"]
            .map(|name| format!("{}{name}", common::config::MEMORY_SCHEME));
        let aws_section = format!("local_dir = \"{}\"\n", lake.display());
        let config_text = config_text(&sim.base_url(), &urls, &bucket.name, &aws_section, scratch.path());
        let queues = Queues::in_memory(&parse(&config_text).queues, Duration::from_secs(visibility_secs.into()));
        let services = Services::from_parts(bucket.store(), queues);
        Self { sim, bucket, config_text, services, scratch }
    }

    /// The configuration, parsed.
    pub fn config(&self) -> common::config::Config {
        parse(&self.config_text)
    }

    /// The configuration with settings changed (see [`with_settings`]).
    pub fn config_with(&self, edits: &[(&str, &str)]) -> common::config::Config {
        parse(&with_settings(&self.config_text, edits))
    }

    /// The queues and store (the same ones every time: in-memory queues live in this value).
    pub fn services(&self) -> Services {
        self.services.clone()
    }

    /// The published marks, as the consumers keep them in the ledger.
    pub fn marks(&self) -> common::marks::Marks {
        let config = self.config();
        common::marks::Marks::at(self.services.store.clone(), &config.ledger.bucket, &config.ledger.prefix)
    }

    /// The queues.
    pub fn queues(&self) -> &Queues {
        &self.services.queues
    }

    /// A directory of the deployment's own for the test's files, removed with it.
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// The configuration written to a file (binaries can share only the real-protocol tier's queues).
    pub fn config_file(&self) -> PathBuf {
        let path = self.dir().join("config.toml");
        std::fs::write(&path, &self.config_text).expect("write config");
        path
    }
}

/// A TOML configuration with `(section, lines)` edits: each `key = value` line replaces the section's setting of
/// that key, or is added at the top of the section if it had none.
pub fn with_settings(text: &str, edits: &[(&str, &str)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for (section, settings) in edits {
        let header = format!("[{section}]");
        let start = lines.iter().position(|l| l.trim() == header).unwrap_or_else(|| panic!("no {header} section"));
        for setting in settings.lines() {
            let end = lines[start + 1..].iter().position(|l| l.starts_with('[')).map_or(lines.len(), |n| start + 1 + n);
            let key = setting.split('=').next().unwrap_or_default().trim();
            let same_key = |l: &String| l.split('=').next().is_some_and(|k| k.trim() == key);
            match lines[start + 1..end].iter().position(same_key) {
                Some(n) => lines[start + 1 + n] = setting.to_owned(),
                None => lines.insert(start + 1, setting.to_owned()),
            }
        }
    }
    lines.join("\n") + "\n"
}

fn parse(text: &str) -> common::config::Config {
    common::config::Config::parse(text, "test deployment", None).expect("test configuration is valid")
}
