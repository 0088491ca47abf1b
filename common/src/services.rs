//! The outside services of one deployment, built once from its configuration: the six queues (SQS, or in memory
//! for the one-process quick start) and the object store (S3, or a local directory).

use crate::config::{Config, MEMORY_SCHEME, QueuesConfig};
use crate::messages::CompletionMessage;
use crate::queue::{Inbox, MemoryQueue, Queue, QueueError, SqsQueue};
use crate::store::{LocalStore, ObjectStore};
use std::sync::Arc;
use std::time::Duration;

/// In-memory queues dead-letter a message on its sixth receive, like the deployed queues' redrive policy.
const MEMORY_MAX_RECEIVES: u32 = 5;

/// SQS's default visibility timeout, kept by the in-memory queues.
const MEMORY_VISIBILITY: Duration = Duration::from_secs(30);

/// `memory://` queues given to a binary that runs beside others.
#[derive(Debug, thiserror::Error)]
#[error("queues: memory:// queues live inside one process; give SQS URLs, or run local-export")]
pub struct ProcessLocalQueues;

/// The three queues and their dead-letter queues.
#[derive(Clone)]
pub struct Queues {
    /// Export requests.
    pub requests: Arc<dyn Queue>,
    /// Requests that could not be served.
    pub requests_dlq: Arc<dyn Queue>,
    /// Submitted jobs.
    pub jobs: Arc<dyn Queue>,
    /// Jobs that failed.
    pub jobs_dlq: Arc<dyn Queue>,
    /// Completion messages (FIFO).
    pub lake: Arc<dyn Queue>,
    /// Completions the lake could not process.
    pub lake_dlq: Arc<dyn Queue>,
    /// The same completions for the table writer, when there is one.
    pub tables: Option<Arc<dyn Queue>>,
    /// Completions the table writer could not apply.
    pub tables_dlq: Option<Arc<dyn Queue>>,
}

impl Queues {
    /// The requests queue as the producer serves it.
    pub fn requests_inbox(&self) -> Inbox {
        Inbox::new(self.requests.clone(), self.requests_dlq.clone())
    }

    /// The jobs queue as the consumers serve it.
    pub fn jobs_inbox(&self) -> Inbox {
        Inbox::new(self.jobs.clone(), self.jobs_dlq.clone())
    }
}

/// Queues and store of one deployment.
#[derive(Clone)]
pub struct Services {
    /// Where files, metadata and the ledger go.
    pub store: Arc<dyn ObjectStore>,
    /// The queues.
    pub queues: Queues,
    sqs: Option<aws_sdk_sqs::Client>,
}

impl Services {
    /// Connects what the configuration names. AWS clients are built only for what is on AWS.
    pub async fn connect(config: &Config) -> Self {
        let in_memory = config.queues.in_memory();
        let on_aws = !in_memory || config.aws.local_dir.is_none();
        let sdk = if on_aws { Some(config.aws.load().await) } else { None };
        let store: Arc<dyn ObjectStore> = match (&config.aws.local_dir, &sdk) {
            (Some(dir), _) => Arc::new(LocalStore::new(dir)),
            (None, Some(sdk)) => Arc::new(config.aws.s3_store(sdk)),
            (None, None) => unreachable!("an SDK configuration is loaded whenever S3 is used"),
        };
        let sqs = sdk.as_ref().filter(|_| !in_memory).map(|sdk| config.aws.sqs_client(sdk));
        let queues = match &sqs {
            Some(client) => sqs_queues(client, &config.queues),
            None => Queues::in_memory(&config.queues, MEMORY_VISIBILITY),
        };
        Self { store, queues, sqs }
    }

    /// Services made of the given parts (no SQS client: SQS-only operations are unavailable).
    pub fn from_parts(store: Arc<dyn ObjectStore>, queues: Queues) -> Self {
        Self { store, queues, sqs: None }
    }

    /// Connects for a binary that shares its queues with other processes (`producer`, `consumer`): queues in
    /// memory would be the process's own, so they are refused.
    pub async fn connect_shared(config: &Config) -> Result<Self, ProcessLocalQueues> {
        if config.queues.in_memory() {
            return Err(ProcessLocalQueues);
        }
        Ok(Self::connect(config).await)
    }

    /// The SQS queue at `url`, when the queues are on SQS (for SQS-only operations such as the native redrive).
    pub fn sqs_queue(&self, url: &str) -> Option<SqsQueue> {
        self.sqs.as_ref().map(|client| SqsQueue::new(client.clone(), url))
    }
}

fn sqs_queues(client: &aws_sdk_sqs::Client, urls: &QueuesConfig) -> Queues {
    let queue = |url: &str| -> Arc<dyn Queue> { Arc::new(SqsQueue::new(client.clone(), url)) };
    Queues {
        requests: queue(&urls.requests),
        requests_dlq: queue(&urls.requests_dlq),
        jobs: queue(&urls.jobs),
        jobs_dlq: queue(&urls.jobs_dlq),
        lake: queue(&urls.lake),
        lake_dlq: queue(&urls.lake_dlq),
        tables: urls.tables.as_deref().map(queue),
        tables_dlq: urls.tables_dlq.as_deref().map(queue),
    }
}

/// Where a published file is announced: the lake queue, then the table writer's when there is one (docs/tables.md,
/// "How the writer is fed").
#[derive(Clone)]
pub struct CompletionQueues {
    /// The lake queue.
    pub lake: Arc<dyn Queue>,
    /// The table writer's queue.
    pub tables: Option<Arc<dyn Queue>>,
}

impl CompletionQueues {
    /// Sends `completion` to each queue, the same message (deduplication id, group) to both.
    pub async fn announce(&self, completion: &CompletionMessage) -> Result<(), QueueError> {
        let message = completion.lake_message();
        self.lake.send(message.clone()).await?;
        if let Some(tables) = &self.tables {
            tables.send(message).await?;
        }
        Ok(())
    }
}

impl Queues {
    /// Where published files are announced.
    pub fn completions(&self) -> CompletionQueues {
        CompletionQueues { lake: self.lake.clone(), tables: self.tables.clone() }
    }

    /// The queues `memory://NAME` URLs name, in this process, with a default visibility timeout: a message is
    /// dead-lettered on its sixth receive, like the deployed queues' redrive policy.
    pub fn in_memory(urls: &QueuesConfig, visibility: Duration) -> Self {
        let name = |url: &str| url.trim_start_matches(MEMORY_SCHEME).to_owned();
        let dlq = |url: &str| Arc::new(MemoryQueue::new(name(url), visibility));
        let (requests_dlq, jobs_dlq, lake_dlq) = (dlq(&urls.requests_dlq), dlq(&urls.jobs_dlq), dlq(&urls.lake_dlq));
        let queue = |url: &str, dlq: &Arc<MemoryQueue>| -> Arc<dyn Queue> {
            Arc::new(MemoryQueue::new(name(url), visibility).with_dead_letter(dlq.clone(), MEMORY_MAX_RECEIVES))
        };
        let tables_dlq = urls.tables_dlq.as_deref().map(dlq);
        let tables = urls.tables.as_deref().zip(tables_dlq.as_ref()).map(|(url, dlq)| queue(url, dlq));
        Self {
            requests: queue(&urls.requests, &requests_dlq),
            jobs: queue(&urls.jobs, &jobs_dlq),
            lake: queue(&urls.lake, &lake_dlq),
            tables,
            requests_dlq,
            jobs_dlq,
            lake_dlq,
            tables_dlq: tables_dlq.map(|dlq| dlq as Arc<dyn Queue>),
        }
    }
}
