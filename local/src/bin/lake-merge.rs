//! `lake-merge`: the reference lake merger. Reads the published files of a lake (local directory or S3), merges
//! each object as the lake's ETL does, and writes the merged tables or compares them with expected ones.

use anyhow::Context;
use clap::Parser;
use common::catalogue::Catalogue;
use common::config::Config;
use common::merge::{self, MergedTable};
use common::services::Services;
use common::store::{LocalStore, ObjectStore};
use local_export::lake;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Merges a lake's files per object (files in the order Zuora produced them, the latest record per Id wins, rows
/// flagged deleted are dropped) and writes `OBJECT.csv` per object, or compares with such files.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// A deployment's configuration: its store (S3) and catalogue. Without it, the built-in catalogue.
    #[arg(long, env = "ZLE_CONFIG")]
    config: Option<PathBuf>,
    /// A local-directory lake (s3://BUCKET/KEY is LAKE_DIR/BUCKET/KEY), e.g. the quick start's `lake`.
    #[arg(long)]
    lake_dir: Option<PathBuf>,
    /// Completion messages as JSON lines (e.g. LAKE_DIR/completions.jsonl); without it, every metadata JSON in the
    /// catalogue's buckets.
    #[arg(long)]
    completions: Option<PathBuf>,
    /// Only these objects (comma-separated).
    #[arg(long, value_delimiter = ',')]
    objects: Vec<String>,
    /// Write OBJECT.csv per object here (header sorted by name, rows sorted by Id).
    #[arg(long, conflicts_with = "compare")]
    out: Option<PathBuf>,
    /// Compare with OBJECT.csv per object here (on the lake's columns); exit 1 on any difference.
    #[arg(long)]
    compare: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    common::logging::init("warn");
    match run(Cli::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("lake-merge: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let config = match &cli.config {
        Some(path) => Some(Config::load(path)?),
        None => None,
    };
    let catalogue = match &config {
        Some(config) => config.catalogue()?,
        None => Catalogue::builtin(),
    };
    let store: Arc<dyn ObjectStore> = match (&cli.lake_dir, &config) {
        (Some(dir), _) => Arc::new(LocalStore::new(dir)),
        (None, Some(config)) => Services::connect(config).await.store,
        (None, None) => anyhow::bail!("give --lake-dir DIR (a local lake) or --config FILE (a deployment's S3)"),
    };
    let objects = lake::select(&catalogue, &cli.objects)?;
    let completions = match &cli.completions {
        Some(path) => lake::completions_from_lines(
            &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        )?,
        None => merge::completions_from_metadata(&*store, &objects).await?,
    };
    let mut same = true;
    let mut out = Lines::default();
    for object in objects {
        let files = completions.iter().filter(|c| c.object == object.name).count();
        let merged = merge::merge_object(&*store, object, &completions).await?;
        if let Some(dir) = &cli.out {
            std::fs::create_dir_all(dir)?;
            let path = dir.join(format!("{}.csv", object.name));
            std::fs::write(&path, lake::to_csv(&merged)?)?;
            out.line(format_args!(
                "{:<22} {files:>4} files {:>9} rows -> {}",
                object.name,
                merged.rows.len(),
                path.display()
            ))?;
        } else if let Some(dir) = &cli.compare {
            let path = dir.join(format!("{}.csv", object.name));
            let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut expected = MergedTable::default();
            expected.apply(&text, &merge::column(object, "Id"), None).with_context(|| path.display().to_string())?;
            let differences = merge::differences(&merged, &expected, 10);
            let verdict = if differences.is_empty() { "same" } else { "DIFFERENT" };
            out.line(format_args!("{:<22} {files:>4} files {:>9} rows: {verdict}", object.name, merged.rows.len()))?;
            for difference in &differences {
                out.line(format_args!("    {difference}"))?;
            }
            same &= differences.is_empty();
        } else {
            out.line(format_args!("{:<22} {files:>4} files {:>9} rows", object.name, merged.rows.len()))?;
        }
    }
    Ok(same)
}

/// Standard output that a reader may close early (`lake-merge ... | head`): the lines it no longer wants are
/// dropped and the work, and its exit status, go on.
#[derive(Default)]
struct Lines {
    closed: bool,
}

impl Lines {
    fn line(&mut self, line: std::fmt::Arguments<'_>) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match writeln!(std::io::stdout().lock(), "{line}") {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            written => written,
        }
    }
}
