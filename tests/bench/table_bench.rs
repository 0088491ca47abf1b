//! The table writer's benchmark (tests/bench/tables.sh, docs/benchmarks.md section 8): InvoiceItem files written
//! once, then applied to a Delta table by the writer's own `apply`, one process per phase so that each phase's
//! peak RSS is its own.
//!
//! - `table-bench gen DIR ROWS DAYS DAY_ROWS`: `DIR/raw/InvoiceItem/full.csv` (ROWS rows) and `day-NNN.csv` (DAY_ROWS
//!   rows each: 80% new items, 18% updates of earlier ones, 2% deletions), with the completions the consumer would
//!   publish for them (`DIR/completions.jsonl`);
//! - `table-bench apply DIR FIRST LAST`: applies completions FIRST..=LAST (0 is the full load) to the table at
//!   `DIR/delta/InvoiceItem`, printing one line per file: key, records, seconds, rows/s, the table's rows, data
//!   files and files rewritten, then the seconds and files of expiring the versions it replaced.

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::messages::{Checksum, CompletionMessage, FileColumn, FileSchema, JobKind, Window};
use common::store::LocalStore;
use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use table_writer::delta::{Applied, apply, row_count};
use table_writer::maintenance::expire;
use table_writer::source::FileSource;

/// The file's columns and their Zuora types: InvoiceItem's own fields, then the joined Invoice and Account Ids.
const COLUMNS: &[(&str, &str)] = &[
    ("InvoiceItem.IsDeleted", "boolean"),
    ("InvoiceItem.Id", "text"),
    ("InvoiceItem.ChargeAmount", "decimal"),
    ("InvoiceItem.ChargeDate", "datetime"),
    ("InvoiceItem.ChargeName", "text"),
    ("InvoiceItem.Quantity", "decimal"),
    ("InvoiceItem.ServiceStartDate", "date"),
    ("InvoiceItem.ServiceEndDate", "date"),
    ("InvoiceItem.SKU", "text"),
    ("InvoiceItem.TaxAmount", "decimal"),
    ("InvoiceItem.UnitPrice", "decimal"),
    ("InvoiceItem.UOM", "text"),
    ("InvoiceItem.CreatedDate", "datetime"),
    ("InvoiceItem.UpdatedDate", "datetime"),
    ("Invoice.Id", "text"),
    ("Account.Id", "text"),
];

/// A 64-bit mix (SplitMix64's finaliser): the same input, the same output, on every machine.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The Id of item `n`: 32 hex digits, as Zuora's.
fn id(n: u64) -> String {
    format!("{:016x}{:016x}", mix(n), mix(n ^ 0xA5A5_A5A5))
}

/// When the file of day `day` (0: the full load) was run.
fn executed_at(day: u64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 6, 0, 0).unwrap() + Duration::days(day as i64)
}

/// One row of item `n` as of day `day`.
fn write_row(out: &mut impl Write, n: u64, day: u64, deleted: bool) -> std::io::Result<()> {
    let r = mix(n.wrapping_mul(31).wrapping_add(day));
    let updated = executed_at(day) - Duration::minutes((r % 600) as i64);
    let created = executed_at(0) - Duration::days((mix(n) % 1400) as i64);
    let start = created.date_naive();
    let quantity = 1 + r % 20;
    let unit = (r >> 8) % 100_000;
    writeln!(
        out,
        "{deleted},{},{}.{:02},{},Charge {},{quantity},{start},{},SKU-{:05},{}.{:02},{}.{:02},Each,{},{},{},{}",
        id(n),
        quantity * unit / 100,
        quantity * unit % 100,
        updated.format("%Y-%m-%dT%H:%M:%S%z"),
        r % 500,
        start + Duration::days(30),
        r % 10_000,
        unit / 1000,
        unit % 100,
        unit / 100,
        unit % 100,
        created.format("%Y-%m-%dT%H:%M:%S%z"),
        updated.format("%Y-%m-%dT%H:%M:%S%z"),
        id(n / 8 + (1 << 40)),
        id(n / 64 + (1 << 41)),
    )
}

/// The completion the consumer would publish for `key`.
fn completion(key: &str, day: u64, records: u64) -> CompletionMessage {
    let job = format!("bench-{day:03}");
    let at = executed_at(day);
    let deletions = FileSchema::of_deletions("InvoiceItem.Id".into(), "InvoiceItem.IsDeleted".into(), "UTC");
    CompletionMessage {
        version: 1,
        job_id: job.clone(),
        batch_id: format!("{job}-b"),
        file_id: format!("{job}-f"),
        object: "InvoiceItem".into(),
        segment: 0,
        segments: 1,
        bucket: "raw".into(),
        key: key.into(),
        metadata_key: format!("{key}.metadata.json"),
        record_count: records,
        bytes: 0,
        full: day == 0,
        window: Window { from: (day > 0).then(|| executed_at(day - 1)), to: at },
        executed_at: at,
        checksum: Checksum { algorithm: "CRC32C".into(), value: String::new() },
        compression: "none".into(),
        kind: Some(JobKind::Increment),
        schema: Some(FileSchema {
            columns: COLUMNS
                .iter()
                .map(|(name, ty)| FileColumn { name: (*name).into(), zuora_type: (*ty).into(), nullable: true })
                .collect(),
            ..deletions
        }),
    }
}

fn generate(dir: &Path, rows: u64, days: u64, day_rows: u64) -> std::io::Result<()> {
    let files = dir.join("raw/InvoiceItem");
    std::fs::create_dir_all(&files)?;
    let header = COLUMNS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(",");
    let mut completions = BufWriter::new(std::fs::File::create(dir.join("completions.jsonl"))?);
    let (mut items, mut deleted) = (rows, HashSet::new());
    for day in 0..=days {
        let name = if day == 0 { "full.csv".to_owned() } else { format!("day-{day:03}.csv") };
        let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(files.join(&name))?);
        writeln!(out, "{header}")?;
        let records = if day == 0 { rows } else { day_rows };
        if day == 0 {
            for n in 0..rows {
                write_row(&mut out, n, 0, false)?;
            }
        } else {
            let (new, updated) = (day_rows * 80 / 100, day_rows * 18 / 100);
            for k in 0..new {
                write_row(&mut out, items + k, day, false)?;
            }
            // Earlier items, each at most once a day and none deleted before (as Zuora's files have them).
            let mut today = HashSet::new();
            let mut draw = day << 32;
            for k in new..day_rows {
                let pick = loop {
                    draw += 1;
                    let pick = mix(draw) % items;
                    if !deleted.contains(&pick) && today.insert(pick) {
                        break pick;
                    }
                };
                let delete = k >= new + updated;
                if delete {
                    deleted.insert(pick);
                }
                write_row(&mut out, pick, day, delete)?;
            }
            items += new;
        }
        out.flush()?;
        let message = completion(&format!("InvoiceItem/{name}"), day, records);
        writeln!(completions, "{}", serde_json::to_string(&message)?)?;
    }
    completions.flush()
}

async fn apply_files(dir: PathBuf, first: usize, last: usize) -> Result<(), Box<dyn std::error::Error>> {
    let lines = std::fs::read_to_string(dir.join("completions.jsonl"))?;
    let source = FileSource::Store(Arc::new(LocalStore::new(&dir)));
    let path = dir.join("delta/InvoiceItem");
    std::fs::create_dir_all(&path)?;
    let url = url::Url::from_directory_path(std::path::absolute(&path)?).map_err(|()| "not a path")?;
    let mut table = deltalake::DeltaTableBuilder::from_url(url)?.build()?;
    if path.join("_delta_log").is_dir() {
        table.load().await?;
    }
    for line in lines.lines().skip(first).take(last + 1 - first) {
        let completion: CompletionMessage = serde_json::from_str(line)?;
        let started = Instant::now();
        let applied = apply(&mut table, &completion, &source).await?;
        let seconds = started.elapsed().as_secs_f64();
        let Applied::Committed { files_removed, .. } = applied else { return Err(format!("{applied:?}").into()) };
        let data_files = table.snapshot()?.log_data().num_files();
        // The earlier copies of the files the commit rewrote, expired at once (the service keeps a week's).
        let started = Instant::now();
        let expired = expire(&table, std::time::Duration::ZERO).await?;
        let expire_seconds = started.elapsed().as_secs_f64();
        println!(
            "{}\t{}\t{seconds:.3}\t{:.0}\t{}\t{data_files}\t{files_removed}\t{expire_seconds:.3}\t{expired}",
            completion.key,
            completion.record_count,
            completion.record_count as f64 / seconds,
            row_count(&table).await?,
        );
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize| -> Result<u64, Box<dyn std::error::Error>> {
        Ok(args.get(i).ok_or("usage: table-bench gen DIR ROWS DAYS DAY_ROWS | apply DIR FIRST LAST")?.parse()?)
    };
    let dir = PathBuf::from(args.get(1).ok_or("DIR")?);
    match args.first().map(String::as_str) {
        Some("gen") => Ok(generate(&dir, number(2)?, number(3)?, number(4)?)?),
        Some("apply") => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(apply_files(dir, number(2)? as usize, number(3)? as usize))
        }
        _ => Err("usage: table-bench gen DIR ROWS DAYS DAY_ROWS | apply DIR FIRST LAST".into()),
    }
}
