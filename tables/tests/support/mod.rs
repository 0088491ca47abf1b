//! What the table writer's tests share: files of Account and their completions, the reference merge of them, a
//! table's rows, and what readers this project did not write see. Each test file uses a part of it.
#![allow(dead_code)]

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use chrono::{DateTime, Utc};
use common::merge::MergedTable;
use common::messages::{Checksum, CompletionMessage, FileColumn, FileSchema, JobKind, Window};
use deltalake::DeltaTable;
use std::collections::BTreeMap;
use table_writer::delta::scan;
use table_writer::source::FileSource;

pub fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// A file of Account with `columns` (after the deleted flag and the Id), and its completion.
pub fn file(
    job: &str,
    executed_at: &str,
    full: bool,
    columns: &[(&str, &str)],
    csv: &'static str,
) -> (CompletionMessage, &'static str) {
    let records = csv::Reader::from_reader(csv.as_bytes()).records().count() as u64;
    (CompletionMessage { record_count: records, ..completion(job, executed_at, full, columns) }, csv)
}

/// The header of a file of Account with [`COLUMNS`].
pub const HEADER: &str = "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\n";

/// A file of Account with [`COLUMNS`] and these `rows` (lines after the [`HEADER`]), and its completion.
pub fn account(job: &str, executed_at: &str, full: bool, rows: &str) -> (CompletionMessage, &'static str) {
    file(job, executed_at, full, COLUMNS, format!("{HEADER}{rows}").leak())
}

/// The file as the writer reads it.
pub fn source(csv: &str) -> FileSource {
    FileSource::Bytes(bytes::Bytes::copy_from_slice(csv.as_bytes()))
}

pub fn completion(job: &str, executed_at: &str, full: bool, columns: &[(&str, &str)]) -> CompletionMessage {
    let mut all = vec![("Account.IsDeleted", "boolean"), ("Account.Id", "text")];
    all.extend_from_slice(columns);
    CompletionMessage {
        version: 1,
        job_id: job.into(),
        batch_id: format!("{job}-b"),
        file_id: format!("{job}-f"),
        object: "Account".into(),
        segment: 0,
        segments: 1,
        bucket: "raw".into(),
        key: format!("Account/{job}.csv"),
        metadata_key: format!("Account/{job}.metadata.json"),
        record_count: 0,
        bytes: 0,
        full,
        window: Window { from: None, to: at(executed_at) },
        executed_at: at(executed_at),
        checksum: Checksum { algorithm: "CRC32C".into(), value: String::new() },
        compression: "none".into(),
        kind: Some(JobKind::Increment),
        schema: Some(FileSchema::of_deletions("Account.Id".into(), "Account.IsDeleted".into(), "UTC")).map(|s| {
            FileSchema {
                columns: all
                    .iter()
                    .map(|(name, ty)| FileColumn { name: (*name).into(), zuora_type: (*ty).into(), nullable: true })
                    .collect(),
                ..s
            }
        }),
    }
}

/// Rows as the reference merge keeps them: Id -> column -> text.
pub type Rows = BTreeMap<String, BTreeMap<String, String>>;

/// The table's rows.
pub async fn table_rows(table: &DeltaTable) -> Rows {
    let mut out = BTreeMap::new();
    for batch in scan(table).await.unwrap() {
        rows_of(&batch, &mut out);
    }
    out
}

pub fn rows_of(batch: &RecordBatch, out: &mut Rows) {
    let schema = batch.schema();
    let as_text: Vec<_> = batch
        .columns()
        .iter()
        .map(|c| deltalake::arrow::compute::cast(c, &deltalake::arrow::datatypes::DataType::Utf8).unwrap())
        .collect();
    for row in 0..batch.num_rows() {
        let mut values = BTreeMap::new();
        for (field, column) in schema.fields().iter().zip(&as_text) {
            let column = column.as_string::<i32>();
            if field.name() != "_zle_executed_at" && !column.is_null(row) {
                let mut value = column.value(row).to_owned();
                if matches!(field.data_type(), deltalake::arrow::datatypes::DataType::Decimal128(..)) {
                    value = value.trim_end_matches('0').trim_end_matches('.').to_owned();
                }
                values.insert(format!("Account.{}", field.name()), value);
            }
        }
        out.insert(values["Account.Id"].clone(), values);
    }
}

/// The reference merge's rows, nulls left out (a table column the file did not have is null, not empty).
pub fn expected(files: &[(&CompletionMessage, &str)]) -> Rows {
    let mut merged = MergedTable::default();
    let mut ordered: Vec<_> = files.to_vec();
    ordered.sort_by_key(|(c, _)| c.executed_at);
    for (completion, csv) in ordered {
        if completion.replaces_the_table() {
            merged = MergedTable::default();
        }
        merged.apply(csv.as_bytes(), "Account.Id", Some("Account.IsDeleted")).unwrap();
    }
    merged.rows.into_iter().map(|(id, row)| (id, row.into_iter().filter(|(_, v)| !v.is_empty()).collect())).collect()
}

pub async fn new_table() -> (tempfile::TempDir, DeltaTable) {
    let dir = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(dir.path()).unwrap();
    (dir, DeltaTable::try_from_url(url).await.unwrap())
}

pub const COLUMNS: &[(&str, &str)] = &[("Account.Name", "text"), ("Account.Balance", "decimal")];

/// Four days of files, in the order published: a first load; upserts and a delete; a day whose query gained a
/// field (`Region`); a backfill published after that day but run before it (its version of `a4` is older); then
/// Zuora starting the session again (a full load that replaces the table).
pub fn days() -> Vec<(CompletionMessage, &'static str)> {
    let mut widened = COLUMNS.to_vec();
    widened.push(("Account.Region", "text"));
    vec![
        file(
            "j1",
            "2026-11-01T06:00:00Z",
            true,
            COLUMNS,
            "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\n\
             false,a1,Ann,10\nfalse,a2,Bob,20.5\nfalse,a3,\"Cy, \"\"the\"\" third\nof line two\",\n",
        ),
        file(
            "j2",
            "2026-11-02T06:00:00Z",
            false,
            COLUMNS,
            "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,a2,Bob,21\ntrue,a3,,\nfalse,a4,Dee,4\n",
        ),
        file(
            "j4",
            "2026-11-03T06:00:00Z",
            false,
            &widened,
            "Account.IsDeleted,Account.Id,Account.Name,Account.Balance,Account.Region\n\
             false,a4,Dee,44,EU\nfalse,a1,Ann,10,US\n",
        ),
        file(
            "j3",
            "2026-11-02T12:00:00Z",
            false,
            COLUMNS,
            "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,a4,Dee (old),4\nfalse,a5,Eve,5\n",
        ),
        file(
            "j5",
            "2026-11-04T06:00:00Z",
            true,
            &widened,
            "Account.IsDeleted,Account.Id,Account.Name,Account.Balance,Account.Region\nfalse,a1,Ann,1,US\n",
        ),
    ]
}

/// What `tests/third_party/read_delta.py` prints for `args`: each reader's rows.
pub fn read_with_python(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let python = std::env::var("ZLE_TEST_PYTHON").expect("ZLE_TEST_PYTHON: run the suite with ./tests/run.sh");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/third_party/read_delta.py");
    let output = std::process::Command::new(python).arg(script).args(args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The rows `reader` saw, by the reference merge's names.
pub fn rows_read_by(read: &serde_json::Value, reader: &str) -> Rows {
    let rows = read[reader].as_object().unwrap().iter().map(|(id, row)| {
        let row = row.as_object().unwrap().iter();
        (id.clone(), row.map(|(k, v)| (format!("Account.{k}"), v.as_str().unwrap().to_owned())).collect())
    });
    rows.collect()
}

/// The `*.parquet` files in a table's directory: its data files, current or replaced.
pub fn parquet_files(dir: &std::path::Path) -> usize {
    let files = std::fs::read_dir(dir).unwrap();
    files.filter(|e| e.as_ref().unwrap().path().extension() == Some("parquet".as_ref())).count()
}
