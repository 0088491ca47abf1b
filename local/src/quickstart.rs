//! The quick start: a whole export in one process, on embedded defaults. The AQuA simulator runs in-process, the
//! queues are in memory (same [`Queue`](common::queue::Queue) trait as SQS), the lake is a local directory (same
//! [`ObjectStore`] trait as S3), and the real producer and consumer services run on them:
//! day 1 `afterLastIncrement` (full loads) -> inserts, updates and deletes at Zuora -> day 2 `afterLastIncrement`
//! (increments with deleted rows) -> a date backfill since day 1 -> `producer audit` of every object. Then every file
//! is checked: its records, counted by an RFC 4180 parser, equal its metadata's `recordCount`, and the merged lake
//! equals the simulator's data.

use crate::lake;
use anyhow::{Context, bail};
use common::catalogue::{Catalogue, ObjectSpec};
use common::config::Config;
use common::merge::{self, MergedTable};
use common::messages::CompletionMessage;
use common::queue::{Queue, QueueDepth};
use common::services::{Queues, Services};
use common::store::ObjectStore;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use table_writer::service::TableWriter;
use tokio::sync::watch;
use tokio::task::JoinSet;
use zuora_sim::{Control, Mutation, SimConfig, Simulator};

/// The embedded configuration (also shipped as `deploy/examples/local.toml`).
pub const LOCAL_CONFIG: &str = include_str!("../../deploy/examples/local.toml");

/// Completion messages are appended here, one JSON line each, in the lake directory.
pub const COMPLETIONS_FILE: &str = "completions.jsonl";

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The lake: `s3://BUCKET/KEY` is `LAKE_DIR/BUCKET/KEY`.
    pub lake_dir: PathBuf,
    /// A configuration in place of the embedded one (its Zuora URL is replaced by the simulator's).
    pub config: Option<PathBuf>,
    /// A catalogue in place of the configuration's: a file, or `builtin:old-export`.
    pub catalogue: Option<PathBuf>,
    /// Consumer services in the process.
    pub consumers: usize,
}

/// One published file, as the summary shows it.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// Which step of the run.
    pub step: &'static str,
    /// The completion message.
    pub completion: CompletionMessage,
    /// Records counted by an RFC 4180 parser.
    pub records: u64,
    /// Records flagged deleted.
    pub deleted: u64,
    /// The file on disk.
    pub path: PathBuf,
}

/// What the run produced.
#[derive(Debug)]
pub struct Report {
    /// Every file, in the order published.
    pub files: Vec<FileReport>,
    /// Objects whose merged lake equals the simulator's data.
    pub objects_matching: usize,
    /// Objects in the catalogue.
    pub objects: usize,
    /// `producer audit`'s line per object.
    pub audits: Vec<String>,
    /// Each object's table, read back (none without `[tables]`).
    pub tables: Vec<TableReport>,
}

/// An object's table as read back after the run.
#[derive(Debug)]
pub struct TableReport {
    /// The object.
    pub object: String,
    /// Rows, equal to Zuora's live rows.
    pub rows: u64,
    /// The table's version (one commit per file applied, after the one creating it).
    pub version: u64,
}

/// The configuration: the file given, or the embedded one; pointed at the simulator and the lake directory.
fn configuration(options: &Options, base_url: String) -> anyhow::Result<Config> {
    let (text, origin) = match &options.config {
        Some(path) => (std::fs::read_to_string(path)?, path.display().to_string()),
        None => (LOCAL_CONFIG.to_owned(), "deploy/examples/local.toml (embedded)".to_owned()),
    };
    let mut config = Config::parse(&text, &origin, None)?;
    if !config.queues.in_memory() {
        bail!("{origin}: queues: the quick start runs on memory:// queues");
    }
    config.zuora.base_url = base_url;
    config.aws.local_dir = Some(options.lake_dir.clone());
    if let Some(catalogue) = &options.catalogue {
        config.catalogue = Some(catalogue.clone());
        config.raw_bucket = None;
    }
    Ok(config)
}

/// Removes what an earlier quick start left in the lake directory: its buckets, its completions file and any
/// unfinished upload. Nothing else in the directory is touched.
fn clear_previous_run(lake_dir: &Path, catalogue: &Catalogue, config: &Config) -> std::io::Result<()> {
    let mut buckets: Vec<&str> = catalogue.objects.iter().map(|o| o.target.bucket.as_str()).collect();
    buckets.push(&config.ledger.bucket);
    buckets.extend(config.tables.as_ref().and_then(|t| t.bucket_and_prefix()).map(|(bucket, _)| bucket));
    for name in buckets.into_iter().chain([".uploads"]) {
        match std::fs::remove_dir_all(lake_dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    match std::fs::remove_file(lake_dir.join(COMPLETIONS_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Runs the whole quick start and checks its result.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let mut sim_config = SimConfig::default();
    sim_config.settings.job_execution_secs = 0.2;
    let sim = Simulator::start(sim_config).await?;
    let config = configuration(options, sim.base_url())?;
    let catalogue = config.catalogue()?;
    clear_previous_run(&options.lake_dir, &catalogue, &config)
        .with_context(|| format!("clearing the previous quick start in {}", options.lake_dir.display()))?;
    std::fs::create_dir_all(&options.lake_dir)?;
    let services = Services::connect(&config).await;
    let (stop, stopped) = watch::channel(false);
    let shutdown = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };

    let mut services_running = JoinSet::new();
    let producer = Arc::new(producer::service::Producer::from_config(&config, &services)?);
    let (queues, settings, until) = (services.queues.clone(), config.producer.clone(), shutdown());
    services_running.spawn(async move {
        producer::service::run(&producer, &queues.requests_inbox(), &settings, until).await;
    });
    for _ in 0..options.consumers.max(1) {
        let worker = Arc::new(consumer::worker::Worker::from_config(&config, &services)?);
        services_running.spawn(consumer::service::run(worker, shutdown()));
    }
    let writer = match &config.tables {
        Some(_) => Some(Arc::new(TableWriter::from_config(&config, &services)?)),
        None => None,
    };
    if let Some(writer) = &writer {
        services_running.spawn(table_writer::service::run(
            writer.clone(),
            Duration::from_secs(1),
            table_writer::service::KEEP_VERSIONS,
            shutdown(),
        ));
    }
    let published = Arc::new(Mutex::new(Vec::new()));
    let completions_file =
        std::fs::OpenOptions::new().create(true).append(true).open(options.lake_dir.join(COMPLETIONS_FILE))?;
    services_running.spawn(read_lake_queue(
        services.queues.lake.clone(),
        completions_file,
        published.clone(),
        shutdown(),
    ));

    let control = sim.control();
    let day_one = control.now().date_naive();
    let steps = Steps { queues: &services.queues, published: &published, objects: catalogue.objects.len() };
    let mut files = Vec::new();
    let outcome = async {
        files.extend(steps.run("day 1: afterLastIncrement", r#"{"exportFromDate":"afterLastIncrement"}"#).await?);
        change_every_object(&control, &catalogue)?;
        files.extend(steps.run("day 2: afterLastIncrement", r#"{"exportFromDate":"afterLastIncrement"}"#).await?);
        let backfill = format!(r#"{{"exportFromDate":"{day_one}"}}"#);
        files.extend(steps.run("backfill from day 1", &backfill).await?);
        audit(&config, &services, &catalogue).await
    }
    .await;
    let _ = stop.send(true);
    while services_running.join_next().await.is_some() {}
    let audits = outcome?;

    let mut reports = Vec::new();
    for (step, completion) in files {
        reports.push(check_file(&*services.store, &catalogue, &options.lake_dir, step, completion).await?);
    }
    let truths =
        catalogue.objects.iter().map(|object| zuora_truth(&control, object)).collect::<anyhow::Result<Vec<_>>>()?;
    let objects_matching = compare_with_zuora(&*services.store, &catalogue, &truths, &reports).await?;
    let tables = match &writer {
        Some(writer) => compare_tables_with_zuora(writer, &catalogue, &truths).await?,
        None => Vec::new(),
    };
    sim.shutdown().await;
    Ok(Report { files: reports, objects_matching, objects: catalogue.objects.len(), audits, tables })
}

/// `producer audit` of every object, as an operator runs it: Zuora's Ids and `UpdatedDate`s against the lake.
async fn audit(config: &Config, services: &Services, catalogue: &Catalogue) -> anyhow::Result<Vec<String>> {
    let auditor = producer::audit::Auditor::from_config(config, services)?;
    let mut lines = Vec::new();
    for object in &catalogue.objects {
        let audit = auditor.audit(object).await.with_context(|| format!("auditing {}", object.name))?;
        if !audit.is_equal() {
            bail!("audit: {}", audit.summary());
        }
        lines.push(audit.summary());
    }
    Ok(lines)
}

/// Inserts, updates and deletes in every object, between two advances of Zuora's clock.
fn change_every_object(control: &Control, catalogue: &Catalogue) -> anyhow::Result<()> {
    control.advance_clock(Duration::from_secs(6 * 3600));
    for object in &catalogue.objects {
        control.mutate(&object.name, Mutation { insert: 3, update: 5, delete: 2, ..Mutation::default() })?;
    }
    control.advance_clock(Duration::from_secs(6 * 3600));
    Ok(())
}

/// Receives completion messages as the lake would, appends each to the completions file, and deletes it. A body
/// that is not a completion message is left on the queue (its DLQ takes it after a few receives).
async fn read_lake_queue(
    lake: Arc<dyn Queue>,
    mut completions_file: std::fs::File,
    published: Arc<Mutex<Vec<CompletionMessage>>>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let received = tokio::select! {
            () = &mut shutdown => return,
            received = lake.receive(10, Duration::from_secs(1)) => received,
        };
        for message in received.unwrap_or_default() {
            let Ok(completion) = serde_json::from_str::<CompletionMessage>(&message.body) else { continue };
            let appended = writeln!(completions_file, "{}", message.body);
            if appended.is_ok() && lake.delete(&message.receipt).await.is_ok() {
                published.lock().unwrap_or_else(|e| e.into_inner()).push(completion);
            }
        }
    }
}

/// Runs requests one at a time and waits until everything they caused has settled.
struct Steps<'a> {
    queues: &'a Queues,
    published: &'a Mutex<Vec<CompletionMessage>>,
    objects: usize,
}

impl Steps<'_> {
    async fn run(&self, step: &'static str, request: &str) -> anyhow::Result<Vec<(&'static str, CompletionMessage)>> {
        let already = self.published.lock().unwrap_or_else(|e| e.into_inner()).len();
        let terminal = std::io::stderr().is_terminal();
        let bar = if terminal { ProgressBar::new(self.objects as u64) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("{prefix:26} [{bar:30}] {pos}/{len} files {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(step);
        if !terminal {
            println!("{step}: {request}");
        }
        self.queues.requests.send(common::queue::OutgoingMessage::new(request)).await?;
        let mut shown = already;
        let mut idle_checks = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let done: Vec<CompletionMessage> =
                self.published.lock().unwrap_or_else(|e| e.into_inner())[shown..].to_vec();
            for completion in &done {
                if !terminal {
                    println!(
                        "  {:<20} {:>8} records  s3://{}/{}",
                        completion.object, completion.record_count, completion.bucket, completion.key
                    );
                }
                bar.inc(1);
                bar.set_message(completion.object.clone());
            }
            shown += done.len();
            self.fail_on_dead_letters().await?;
            idle_checks = if self.settled().await? { idle_checks + 1 } else { 0 };
            // Settled twice in a row: no message is between a receive and a send.
            if idle_checks >= 2 {
                break;
            }
        }
        bar.finish_and_clear();
        let files: Vec<_> = self.published.lock().unwrap_or_else(|e| e.into_inner())[already..]
            .iter()
            .map(|c| (step, c.clone()))
            .collect();
        if terminal {
            eprintln!("{step}: {} files", files.len());
        }
        Ok(files)
    }

    async fn settled(&self) -> anyhow::Result<bool> {
        let tables = self.queues.tables.iter();
        for queue in [&self.queues.requests, &self.queues.jobs, &self.queues.lake].into_iter().chain(tables) {
            if queue.depth().await? != QueueDepth::default() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn fail_on_dead_letters(&self) -> anyhow::Result<()> {
        let tables = self.queues.tables_dlq.iter();
        for dlq in [&self.queues.requests_dlq, &self.queues.jobs_dlq].into_iter().chain(tables) {
            if let Some(message) = dlq.receive(1, Duration::ZERO).await?.into_iter().next() {
                let reason = message.attributes.get("reason").cloned().unwrap_or_default();
                bail!("a message went to {}: {reason}\n{}", dlq.name(), message.body);
            }
        }
        Ok(())
    }
}

/// Counts a published file's records with an RFC 4180 parser and checks them against its metadata.
async fn check_file(
    store: &dyn ObjectStore,
    catalogue: &Catalogue,
    lake_dir: &Path,
    step: &'static str,
    completion: CompletionMessage,
) -> anyhow::Result<FileReport> {
    let object = catalogue.objects.iter().find(|o| o.name == completion.object).context("object not in catalogue")?;
    let metadata = store
        .get(&completion.bucket, &completion.metadata_key)
        .await?
        .with_context(|| format!("{}: no metadata JSON", completion.metadata_key))?;
    let metadata = CompletionMessage::from_metadata_json(&metadata)?;
    let csv = merge::file_csv(store, &completion).await?;
    let deleted_column = object.deleted_column.as_deref().map(|d| merge::column(object, d));
    let (records, deleted) = lake::count_records(&csv, deleted_column.as_deref())?;
    if records != metadata.record_count {
        bail!("{}: {records} records, metadata says {}", completion.key, metadata.record_count);
    }
    let path = lake_dir.join(&completion.bucket).join(&completion.key);
    Ok(FileReport { step, completion, records, deleted, path })
}

/// The simulator's live rows of `object`, as its query selects them (a query with a filter: the rows it lets
/// through), keyed by Id.
pub fn zuora_truth(control: &Control, object: &ObjectSpec) -> anyhow::Result<MergedTable> {
    let mut truth = MergedTable::default();
    truth.apply(control.ground_truth_of(&object.query)?.as_bytes(), &merge::column(object, "Id"), None)?;
    Ok(truth)
}

/// Merges every object's files and compares the result with the simulator's live rows (`truths`, in catalogue
/// order).
async fn compare_with_zuora(
    store: &dyn ObjectStore,
    catalogue: &Catalogue,
    truths: &[MergedTable],
    files: &[FileReport],
) -> anyhow::Result<usize> {
    let completions: Vec<CompletionMessage> = files.iter().map(|f| f.completion.clone()).collect();
    let mut matching = 0;
    for (object, truth) in catalogue.objects.iter().zip(truths) {
        let merged = merge::merge_object(store, object, &completions).await?;
        let differences = merge::differences(&merged, truth, 5);
        if differences.is_empty() {
            matching += 1;
        } else {
            bail!("{}: the merged lake differs from Zuora:\n  {}", object.name, differences.join("\n  "));
        }
    }
    Ok(matching)
}

/// Reads each object's table back through delta-rs and compares its Ids with the simulator's live rows (`truths`,
/// in catalogue order).
async fn compare_tables_with_zuora(
    writer: &TableWriter,
    catalogue: &Catalogue,
    truths: &[MergedTable],
) -> anyhow::Result<Vec<TableReport>> {
    let mut reports = Vec::new();
    for (object, truth) in catalogue.objects.iter().zip(truths) {
        let table = writer.table(&object.name).await?;
        let rows = table_writer::delta::row_count(&table).await?;
        let ids = table_writer::delta::ids(&table).await?;
        let expected: std::collections::BTreeSet<String> = truth.rows.keys().cloned().collect();
        if rows != expected.len() as u64 || ids != expected {
            let missing: Vec<_> = expected.difference(&ids).take(5).collect();
            let extra: Vec<_> = ids.difference(&expected).take(5).collect();
            bail!(
                "{}: the table has {rows} rows, Zuora {}; missing {missing:?}, extra {extra:?}",
                object.name,
                expected.len()
            );
        }
        reports.push(TableReport { object: object.name.clone(), rows, version: table.version().unwrap_or_default() });
    }
    Ok(reports)
}

/// The summary table: one line per published file.
pub fn summary(report: &Report) -> String {
    let mut out = format!(
        "{:<26} {:<20} {:<11} {:>8} {:>8} {:>10}  {}\n",
        "step", "object", "kind", "records", "deleted", "bytes", "file"
    );
    for file in &report.files {
        let kind = if file.completion.full { "full" } else { "incremental" };
        out.push_str(&format!(
            "{:<26} {:<20} {:<11} {:>8} {:>8} {:>10}  {}\n",
            file.step,
            file.completion.object,
            kind,
            file.records,
            file.deleted,
            file.completion.bytes,
            file.path.display()
        ));
    }
    let records: u64 = report.files.iter().map(|f| f.records).sum();
    out.push_str(&format!(
        "\n{} files, {records} records; every file's records (RFC 4180 count) equal its metadata's recordCount; \
         merged lake equals Zuora for {}/{} objects\n",
        report.files.len(),
        report.objects_matching,
        report.objects
    ));
    if !report.tables.is_empty() {
        out.push_str("\ntables (Delta Lake, read back through delta-rs; rows equal Zuora's live rows, Id by Id):\n");
        for table in &report.tables {
            out.push_str(&format!("  {:<22} {:>8} rows  version {}\n", table.object, table.rows, table.version));
        }
    }
    out.push_str("\nproducer audit (Zuora's Ids and UpdatedDates against the lake):\n");
    for line in &report.audits {
        out.push_str(&format!("  {line}\n"));
    }
    out
}
