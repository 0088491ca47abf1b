//! The table writer's loop: each completion on its queue applied to its object's table, in the order the queue
//! gives them (one message group per object), then deleted; a file the table cannot take goes to the writer's DLQ
//! with its reason; a failure of the table's storage leaves the message to come back.

use crate::delta::{Applied, apply, has_log};
use crate::error::ApplyError;
use crate::glue::GlueCatalog;
use crate::maintenance::{Maintained, maintain};
use crate::source::FileSource;
use common::config::{Config, ConfigError};
use common::messages::CompletionMessage;
use common::queue::{Inbox, ReceivedMessage};
use common::services::Services;
use common::store::ObjectStore;
use deltalake::DeltaTable;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tracing::{error, info, warn};

/// How long a replaced version of a table stays readable (time travel) before its files are deleted.
pub const KEEP_VERSIONS: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the writer maintains the tables it has applied files to while its queue is busy.
const MAINTAIN_EVERY: Duration = Duration::from_secs(3600);

/// Everything the writer talks to.
pub struct TableWriter {
    store: Arc<dyn ObjectStore>,
    /// The tables queue and its dead-letter queue.
    inbox: Inbox,
    location: TablesAt,
    open: Mutex<HashMap<String, DeltaTable>>,
    catalog: Option<GlueCatalog>,
    /// The objects whose table this process has seen registered in `catalog`.
    registered: Mutex<HashSet<String>>,
}

/// Where the tables are.
#[derive(Debug, Clone)]
enum TablesAt {
    /// A local directory (`aws.local_dir`).
    Directory(PathBuf),
    /// An S3 prefix (`s3://BUCKET/PREFIX/`), with the storage options of the configuration's S3.
    S3 { url: url::Url, options: HashMap<String, String> },
}

impl TablesAt {
    fn of(config: &Config) -> Result<Self, ConfigError> {
        let tables = config.tables.as_ref().ok_or_else(|| needed("tables.location"))?;
        let (bucket, prefix) = tables.bucket_and_prefix().ok_or_else(|| needed("tables.location"))?;
        Ok(match &config.aws.local_dir {
            Some(dir) => Self::Directory(dir.join(bucket).join(prefix)),
            None => {
                crate::s3::register();
                let url = format!("s3://{bucket}/{prefix}").parse();
                let url = url.map_err(|e| ConfigError::unusable(format!("tables.location: {e}")))?;
                Self::S3 { url, options: crate::s3::storage_options(&config.aws) }
            }
        })
    }
}

fn needed(field: &str) -> ConfigError {
    ConfigError::unusable(format!("{field}: needed by the table writer"))
}

/// How one message was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Applied, or found applied already.
    Applied(Applied),
    /// Moved to the DLQ with this reason.
    DeadLettered(String),
}

impl TableWriter {
    /// The writer of a configuration: `[tables]`, the tables queue and its DLQ.
    pub fn from_config(config: &Config, services: &Services) -> Result<Self, ConfigError> {
        let location = TablesAt::of(config)?;
        Ok(Self {
            store: services.store.clone(),
            inbox: Inbox::new(
                services.queues.tables.clone().ok_or_else(|| needed("queues.tables"))?,
                services.queues.tables_dlq.clone().ok_or_else(|| needed("queues.tables_dlq"))?,
            ),
            location,
            open: Mutex::default(),
            catalog: None,
            registered: Mutex::default(),
        })
    }

    /// Registers each table in `catalog` once it exists (`tables.glue_database`).
    pub fn with_catalog(mut self, catalog: GlueCatalog) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Whether the writer can run with `config` (what `check-config` checks besides the configuration itself).
    pub fn check(config: &Config) -> Result<(), ConfigError> {
        TablesAt::of(config)?;
        config.queues.tables.as_ref().ok_or_else(|| needed("queues.tables")).map(drop)
    }

    /// The table of `object`, as last seen by this writer.
    pub async fn table(&self, object: &str) -> Result<DeltaTable, ApplyError> {
        let (url, options) = match &self.location {
            TablesAt::Directory(dir) => {
                let path = dir.join(object);
                std::fs::create_dir_all(&path).map_err(ApplyError::table)?;
                (directory_url(&path)?, HashMap::new())
            }
            TablesAt::S3 { url, options } => {
                (url.join(&format!("{object}/")).map_err(ApplyError::table)?, options.clone())
            }
        };
        let mut table = deltalake::DeltaTableBuilder::from_url(url)?.with_storage_options(options).build()?;
        // Not created yet (its first file creates it): not loaded, which would log an error.
        if has_log(&table, "").await? {
            table.load().await?;
        }
        Ok(table)
    }

    /// Applies one message's completion.
    pub async fn handle(&self, message: &ReceivedMessage) -> Result<Settled, ApplyError> {
        let completion: CompletionMessage = match serde_json::from_str(&message.body) {
            Ok(completion) => completion,
            Err(e) => return self.dead_letter(message, format!("not a completion message: {e}")).await,
        };
        let mut open = self.open.lock().await;
        let mut table = match open.remove(&completion.object) {
            Some(table) => table,
            None => self.table(&completion.object).await?,
        };
        let outcome = apply(&mut table, &completion, &FileSource::Store(self.store.clone())).await;
        let location = table.table_url().to_string();
        // A table whose commit failed is read again next time: another writer may have committed meanwhile.
        if outcome.is_ok() {
            open.insert(completion.object.clone(), table);
        }
        drop(open);
        match outcome {
            Ok(applied) => {
                self.inbox.done(message).await.map_err(ApplyError::table)?;
                self.register(&completion.object, &location).await;
                Ok(Settled::Applied(applied))
            }
            Err(ApplyError::Refused(reason)) => {
                let reason = format!("s3://{}/{}: {reason}", completion.bucket, completion.key);
                self.dead_letter(message, reason).await
            }
            Err(e) => Err(e),
        }
    }

    /// Compacts every open table's small files and deletes the files of its versions replaced more than `keep` ago,
    /// its deletions table's too ([`maintain`]), and registers a table whose registration failed. Runs between
    /// files. Returns what it did; a table that fails is tried again next time.
    pub async fn maintain(&self, keep: Duration) -> Maintained {
        let mut open = self.open.lock().await;
        let mut done = Maintained::default();
        for (object, table) in open.iter_mut() {
            self.register(object, table.table_url().as_ref()).await;
            match maintain(table, keep).await {
                Ok(this) => {
                    if this != Maintained::default() {
                        info!(object, compacted = this.compacted, expired = this.expired, "table maintained");
                    }
                    done.compacted += this.compacted;
                    done.expired += this.expired;
                }
                Err(e) => warn!(object, error = %e, "table not maintained; trying again next time"),
            }
        }
        done
    }

    /// Registers `object`'s table at `location` in the Glue catalog, if there is one, unless this process has seen
    /// it there already. It runs after the file's commit and the message's deletion: a failure is logged and tried
    /// again with the object's next file and at the next maintenance, and never sends an applied file round again.
    async fn register(&self, object: &str, location: &str) {
        let Some(catalog) = &self.catalog else { return };
        if self.registered.lock().await.contains(object) {
            return;
        }
        match catalog.register(object, location).await {
            Ok(created) => {
                if created {
                    info!(object, location, "table registered in the Glue catalog");
                }
                self.registered.lock().await.insert(object.to_owned());
            }
            Err(e) => warn!(object, error = %e, "table not registered in the Glue catalog; trying again later"),
        }
    }

    /// Moves `message` to the DLQ with its reason (in its object's message group, deduplicated by its message id:
    /// [`Inbox::dead_letter`]).
    async fn dead_letter(&self, message: &ReceivedMessage, reason: String) -> Result<Settled, ApplyError> {
        self.inbox.dead_letter(message, &reason).await.map_err(ApplyError::table)?;
        Ok(Settled::DeadLettered(reason))
    }
}

/// Serves the tables queue until `shutdown` resolves. The tables are maintained (small files compacted, versions
/// replaced more than `keep` ago expired) when the queue falls idle after a commit, and every hour while it is busy:
/// the stack stops the writer when its queue has been empty for a while, so an hourly timer alone might never fire.
pub async fn run(writer: Arc<TableWriter>, wait: Duration, keep: Duration, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut every_hour = tokio::time::interval(MAINTAIN_EVERY);
    every_hour.reset();
    let mut committed_since_maintenance = false;
    loop {
        let received = tokio::select! {
            () = &mut shutdown => break,
            _ = every_hour.tick() => {
                writer.maintain(keep).await;
                committed_since_maintenance = false;
                continue;
            }
            received = writer.inbox.queue.receive(1, wait) => received,
        };
        let messages = match received {
            Ok(messages) => messages,
            Err(e) => {
                error!(error = %e, "cannot receive completions; retrying in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        if messages.is_empty() && committed_since_maintenance {
            writer.maintain(keep).await;
            committed_since_maintenance = false;
            every_hour.reset();
        }
        for message in messages {
            match writer.handle(&message).await {
                Ok(Settled::Applied(applied)) => {
                    committed_since_maintenance |= matches!(applied, Applied::Committed { .. });
                    info!(?applied, "completion applied");
                }
                Ok(Settled::DeadLettered(reason)) => warn!(%reason, "completion dead-lettered"),
                Err(e) => warn!(error = %e, "completion not applied for now; it will be received again"),
            }
        }
    }
    info!("table writer stopped");
}

/// The `file://` URL of a directory, relative ones (the quick start's `lake`) taken from the working directory.
fn directory_url(path: &std::path::Path) -> Result<url::Url, ApplyError> {
    let absolute = std::path::absolute(path).map_err(ApplyError::table)?;
    url::Url::from_directory_path(&absolute)
        .map_err(|()| ApplyError::table(format!("{}: not a path", absolute.display())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_relative_lake_directory_is_a_table_url_under_the_working_directory() {
        let url = super::directory_url(std::path::Path::new("lake/zuora-tables/Account")).unwrap();
        let expected = std::env::current_dir().unwrap().join("lake/zuora-tables/Account/");
        assert_eq!(url.to_file_path().unwrap(), expected);
    }
}
