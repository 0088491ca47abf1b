//! Files applied to a Delta table on the local disk, against the reference merge (`common::merge`, the lake merger's
//! reading of the files): upserts, deletes, a replacing full load, a file applied twice, a file applied late and a
//! query that gains a field.

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use chrono::{DateTime, Utc};
use common::merge::MergedTable;
use common::messages::{Checksum, CompletionMessage, FileColumn, FileSchema, JobKind, Window};
use deltalake::DeltaTable;
use std::collections::BTreeMap;
use table_writer::delta::{Applied, apply, has_log, row_count, scan};
use table_writer::glue::GlueCatalog;
use table_writer::maintenance::{COMPACT_AT, compact, expire};
use table_writer::service::{Settled, TableWriter, run};
use table_writer::source::FileSource;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// A file of Account with `columns` (after the deleted flag and the Id), and its completion.
fn file(
    job: &str,
    executed_at: &str,
    full: bool,
    columns: &[(&str, &str)],
    csv: &'static str,
) -> (CompletionMessage, &'static str) {
    let records = csv::Reader::from_reader(csv.as_bytes()).records().count() as u64;
    (CompletionMessage { record_count: records, ..completion(job, executed_at, full, columns) }, csv)
}

/// The file as the writer reads it.
fn source(csv: &str) -> FileSource {
    FileSource::Bytes(bytes::Bytes::copy_from_slice(csv.as_bytes()))
}

fn completion(job: &str, executed_at: &str, full: bool, columns: &[(&str, &str)]) -> CompletionMessage {
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
type Rows = BTreeMap<String, BTreeMap<String, String>>;

/// The table's rows.
async fn table_rows(table: &DeltaTable) -> Rows {
    let mut out = BTreeMap::new();
    for batch in scan(table).await.unwrap() {
        rows_of(&batch, &mut out);
    }
    out
}

fn rows_of(batch: &RecordBatch, out: &mut Rows) {
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
fn expected(files: &[(&CompletionMessage, &str)]) -> Rows {
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

async fn new_table() -> (tempfile::TempDir, DeltaTable) {
    let dir = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(dir.path()).unwrap();
    (dir, DeltaTable::try_from_url(url).await.unwrap())
}

const COLUMNS: &[(&str, &str)] = &[("Account.Name", "text"), ("Account.Balance", "decimal")];

/// Four days of files, in the order published: a first load; upserts and a delete; a day whose query gained a
/// field (`Region`); a backfill published after that day but run before it (its version of `a4` is older); then
/// Zuora starting the session again (a full load that replaces the table).
fn days() -> Vec<(CompletionMessage, &'static str)> {
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

#[tokio::test]
async fn days_of_files_a_duplicate_a_late_file_a_new_field_and_a_full_reload_leave_the_reference_merge() {
    let (_dir, mut table) = new_table().await;
    let days = days();
    let mut applied = Vec::new();
    for (completion, csv) in &days {
        let outcome = apply(&mut table, completion, &source(csv)).await.unwrap();
        assert!(matches!(outcome, Applied::Committed { .. }), "{outcome:?}");
        applied.push((completion, *csv));
        assert_eq!(table_rows(&table).await, expected(&applied), "after {}", completion.job_id);
        if completion.job_id == "j3" {
            assert_eq!(table_rows(&table).await["a4"]["Account.Name"], "Dee", "the late file's older version lost");
            assert_eq!(row_count(&table).await.unwrap(), 4);
            // Delivered again: recorded, not applied twice.
            let (again, again_csv) = &days[1];
            assert_eq!(apply(&mut table, again, &source(again_csv)).await.unwrap(), Applied::AlreadyApplied);
            assert_eq!(table_rows(&table).await, expected(&applied));
        }
    }
    // The full load replaced the table: a5 and the others not in it are gone.
    assert_eq!(row_count(&table).await.unwrap(), 1);
}

/// What `tests/third_party/read_delta.py` prints for `args`: each reader's rows.
fn read_with_python(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let python = std::env::var("ZLE_TEST_PYTHON").expect("ZLE_TEST_PYTHON: run the suite with ./tests/run.sh");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/third_party/read_delta.py");
    let output = std::process::Command::new(python).arg(script).args(args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The rows `reader` saw, by the reference merge's names.
fn rows_read_by(read: &serde_json::Value, reader: &str) -> Rows {
    let rows = read[reader].as_object().unwrap().iter().map(|(id, row)| {
        let row = row.as_object().unwrap().iter();
        (id.clone(), row.map(|(k, v)| (format!("Account.{k}"), v.as_str().unwrap().to_owned())).collect())
    });
    rows.collect()
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (DuckDB and deltalake in its Python venv)"]
async fn duckdb_and_delta_rs_python_read_the_tables_rows_as_the_reference_merge_has_them() {
    let (dir, mut table) = new_table().await;
    let days = days();
    let mut applied = Vec::new();
    for (completion, csv) in &days {
        apply(&mut table, completion, &source(csv)).await.unwrap();
        apply(&mut table, completion, &source(csv)).await.unwrap();
        applied.push((completion, *csv));
        let read = read_with_python(&[dir.path().as_os_str()]);
        for reader in ["duckdb", "deltalake"] {
            assert_eq!(rows_read_by(&read, reader), expected(&applied), "{reader}, after {}", completion.job_id);
        }
    }
}

#[tokio::test]
async fn a_file_whose_column_changed_type_is_refused_and_the_table_is_untouched() {
    let (_dir, mut table) = new_table().await;
    let (first, csv) = file(
        "j1",
        "2026-11-01T06:00:00Z",
        true,
        COLUMNS,
        "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,a1,Ann,10\n",
    );
    apply(&mut table, &first, &source(csv)).await.unwrap();
    let version = table.version();
    let text_balance = [("Account.Name", "text"), ("Account.Balance", "text")];
    let csv = "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,a1,Ann,x\n";
    let (changed, csv) = file("j2", "2026-11-02T06:00:00Z", false, &text_balance, csv);
    let error = apply(&mut table, &changed, &source(csv)).await.unwrap_err();
    assert!(matches!(error, table_writer::delta::ApplyError::Refused(_)), "{error}");
    assert!(error.to_string().contains("column Balance"), "{error}");
    assert_eq!(table.version(), version);

    // A stored file whose records are not the ones its completion counted (cut, or replaced since) is refused.
    let (day, csv) = file(
        "j3",
        "2026-11-03T06:00:00Z",
        false,
        COLUMNS,
        "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,a2,Bo,1\n",
    );
    let counted_more = CompletionMessage { record_count: 2, ..day };
    let error = apply(&mut table, &counted_more, &source(csv)).await.unwrap_err();
    assert!(error.to_string().contains("1 records read, the completion says 2"), "{error}");
    assert_eq!(table.version(), version);
}

#[tokio::test]
async fn a_full_load_applied_after_a_newer_increment_keeps_the_increments_rows() {
    let (_dir, mut table) = new_table().await;
    let first: &'static str =
        "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,a1,Ann,1\nfalse,a2,Bob,2\n";
    let newer: &'static str =
        "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,a1,Ann,11\nfalse,a3,Cy,3\n";
    let reload: &'static str =
        "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,a1,Ann,1\nfalse,a2,Bob,2\nfalse,a4,Dee,4\n";
    let files = [
        file("j1", "2026-11-01T06:00:00Z", true, COLUMNS, first),
        file("j3", "2026-11-03T06:00:00Z", false, COLUMNS, newer),
        // Zuora's full load of the 2nd, published after the 3rd's increment.
        file("j2", "2026-11-02T06:00:00Z", true, COLUMNS, reload),
    ];
    let mut applied = Vec::new();
    for (completion, csv) in &files {
        apply(&mut table, completion, &source(csv)).await.unwrap();
        applied.push((completion, *csv));
    }
    assert_eq!(table_rows(&table).await, expected(&applied));
    assert_eq!(table_rows(&table).await["a1"]["Account.Balance"], "11");
}

#[tokio::test]
async fn rows_deleted_by_a_newer_file_or_absent_from_a_newer_full_load_stay_deleted_when_an_older_file_comes_late() {
    let (_dir, mut table) = new_table().await;
    let files = [
        file(
            "j1",
            "2026-11-01T06:00:00Z",
            true,
            COLUMNS,
            "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\n\
             false,a1,Ann,1\nfalse,a2,Bob,2\nfalse,a3,Cy,3\n",
        ),
        // a2 deleted on the 3rd; the 2nd's increment, which still has it, published after.
        file(
            "j3",
            "2026-11-03T06:00:00Z",
            false,
            COLUMNS,
            "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\n\
             true,a2,,\n",
        ),
        file(
            "j2",
            "2026-11-02T06:00:00Z",
            false,
            COLUMNS,
            "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\n\
             false,a2,Bob,22\nfalse,a4,Dee,4\n",
        ),
        // Zuora's full load of the 5th has a1 only; the 4th's increment, published after, has a3 and a new a6.
        file(
            "j5",
            "2026-11-05T06:00:00Z",
            true,
            COLUMNS,
            "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\n\
             false,a1,Ann,5\n",
        ),
        file(
            "j4",
            "2026-11-04T06:00:00Z",
            false,
            COLUMNS,
            "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\n\
             false,a3,Cy,33\nfalse,a6,Fay,6\n",
        ),
    ];
    let mut applied = Vec::new();
    for (completion, csv) in &files {
        let outcome = apply(&mut table, completion, &source(csv)).await.unwrap();
        applied.push((completion, *csv));
        assert_eq!(table_rows(&table).await, expected(&applied), "after {}", completion.job_id);
        match completion.job_id.as_str() {
            "j2" => assert!(!table_rows(&table).await.contains_key("a2"), "a2, deleted on the 3rd, came back"),
            "j4" => assert_eq!(outcome, Applied::Superseded { full_load_at: at("2026-11-05T06:00:00Z") }),
            _ => assert!(matches!(outcome, Applied::Committed { .. }), "{outcome:?}"),
        }
    }
    // The deletion is recorded once, however often its file is delivered.
    let (again, csv) = &files[1];
    assert_eq!(apply(&mut table, again, &source(csv)).await.unwrap(), Applied::AlreadyApplied);
    assert_eq!(table_rows(&table).await, expected(&applied));
}

#[tokio::test]
async fn expiring_replaced_versions_deletes_only_the_files_no_current_row_is_in() {
    let (dir, mut table) = new_table().await;
    let days = days();
    for (completion, csv) in &days[..3] {
        apply(&mut table, completion, &source(csv)).await.unwrap();
    }
    let current = table.snapshot().unwrap().log_data().num_files();
    assert!(parquet_files(dir.path()) > current, "the merges replaced no file");
    // Versions replaced less than a day ago stay for time travel.
    assert_eq!(expire(&table, std::time::Duration::from_secs(86_400)).await.unwrap(), 0);
    let rows = table_rows(&table).await;
    let expired = expire(&table, std::time::Duration::ZERO).await.unwrap();
    assert!(expired > 0);
    assert_eq!(parquet_files(dir.path()), current);
    assert_eq!(table_rows(&table).await, rows);
    // The table goes on taking files.
    let (late, csv) = &days[3];
    apply(&mut table, late, &source(csv)).await.unwrap();
    let applied: Vec<_> = days[..4].iter().map(|(c, csv)| (c, *csv)).collect();
    assert_eq!(table_rows(&table).await, expected(&applied));
}

/// The table of Account under `prefix` of `bucket` on moto's S3, loaded when it exists: a writer's own view.
async fn table_on_s3(bucket: &str) -> DeltaTable {
    table_writer::s3::register();
    let url = format!("s3://{bucket}/zuora/Account/").parse().unwrap();
    let options = table_writer::s3::storage_options(&test_support::aws_config());
    let mut table = deltalake::DeltaTableBuilder::from_url(url).unwrap().with_storage_options(options).build().unwrap();
    if has_log(&table, "").await.unwrap() {
        table.load().await.unwrap();
    }
    table
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (tables on moto's S3, read by delta-rs's Python package)"]
async fn on_s3_two_writers_committing_from_the_same_version_lose_neither_file_and_a_duplicate_applies_once() {
    let bucket = test_support::Aws::connect().await.bucket("tables").await;
    let days = days();
    let apply_day = |day: usize, mut table: DeltaTable| {
        let (completion, csv) = &days[day];
        async move { apply(&mut table, completion, &source(csv)).await }
    };
    apply_day(0, table_on_s3(&bucket).await).await.unwrap();
    // Two writers load the same version; each commits its own file as the next version. S3 takes only the first
    // `_delta_log` entry of a version (If-None-Match): the second writer must see that, not overwrite it.
    let (first, second) = (table_on_s3(&bucket).await, table_on_s3(&bucket).await);
    let loaded = first.version().unwrap();
    let committed = apply_day(1, first).await.unwrap();
    assert!(matches!(committed, Applied::Committed { version, .. } if version == loaded + 1), "{committed:?}");
    match apply_day(2, second).await {
        Ok(Applied::Committed { version, .. }) => assert_eq!(version, loaded + 2, "committed after the first's"),
        Ok(other) => panic!("{other:?}"),
        // A conflict: the completion comes back, and its writer reads the table again.
        Err(e) => {
            eprintln!("the second writer's commit conflicted: {e}");
            let again = apply_day(2, table_on_s3(&bucket).await).await.unwrap();
            assert!(matches!(again, Applied::Committed { .. }), "{again:?}");
        }
    }
    let outcome = apply_day(1, table_on_s3(&bucket).await).await.unwrap();
    assert_eq!(outcome, Applied::AlreadyApplied, "a completion delivered again");
    let applied: Vec<_> = days[..3].iter().map(|(c, csv)| (c, *csv)).collect();
    assert_eq!(table_rows(&table_on_s3(&bucket).await).await, expected(&applied));
    // And as a reader this project did not write sees it on S3.
    let url = format!("s3://{bucket}/zuora/Account/");
    let endpoint = test_support::aws_config().endpoint_url.unwrap();
    let read = read_with_python(&[url.as_ref(), endpoint.as_ref()]);
    assert_eq!(rows_read_by(&read, "deltalake"), expected(&applied), "delta-rs's Python package");
}

/// The `*.parquet` files in a table's directory: its data files, current or replaced.
fn parquet_files(dir: &std::path::Path) -> usize {
    let files = std::fs::read_dir(dir).unwrap();
    files.filter(|e| e.as_ref().unwrap().path().extension() == Some("parquet".as_ref())).count()
}

/// The quick start's writer, on its `memory://` queues (FIFO, as SQS's) and a lake directory in `dir`.
async fn local_writer(dir: &std::path::Path) -> (std::sync::Arc<TableWriter>, common::services::Services) {
    let local = include_str!("../../deploy/examples/local.toml");
    let text = format!("{local}\n[aws]\nlocal_dir = {:?}\n", dir.to_str().unwrap());
    let config = common::config::Config::parse(&text, "local.toml", None).unwrap();
    let services = common::services::Services::connect(&config).await;
    (std::sync::Arc::new(TableWriter::from_config(&config, &services).unwrap()), services)
}

/// Stores each file and announces it, as the consumer does.
async fn publish(services: &common::services::Services, files: &[(CompletionMessage, &str)]) {
    for (completion, csv) in files {
        let body = bytes::Bytes::copy_from_slice(csv.as_bytes());
        services.store.put(&completion.bucket, &completion.key, body).await.unwrap();
        services.queues.completions().announce(completion).await.unwrap();
    }
}

#[tokio::test]
async fn a_body_that_is_no_completion_and_a_file_the_table_cannot_take_go_to_the_dlq_with_their_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, services) = local_writer(dir.path()).await;
    let (tables, dlq) = (services.queues.tables.clone().unwrap(), services.queues.tables_dlq.clone().unwrap());
    let days = days();
    publish(&services, &days[..1]).await;
    let text_balance = [("Account.Name", "text"), ("Account.Balance", "text")];
    let csv = "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,a1,Ann,x\n";
    publish(&services, &[file("j2", "2026-11-02T06:00:00Z", false, &text_balance, csv)]).await;
    let garbage = common::queue::OutgoingMessage::new("not a completion").grouped("Account").deduplicated("g");
    tables.send(garbage).await.unwrap();
    let mut settled = Vec::new();
    while let Some(message) = tables.receive(1, std::time::Duration::ZERO).await.unwrap().pop() {
        settled.push(writer.handle(&message).await.unwrap());
    }
    assert!(matches!(settled[0], Settled::Applied(Applied::Committed { .. })), "{settled:?}");
    let dead = test_support::drain(dlq.as_ref()).await;
    let reasons: Vec<&str> = dead.iter().map(|m| m.attributes["reason"].as_str()).collect();
    assert_eq!(reasons.len(), 2, "{settled:?}");
    assert!(
        reasons[0].starts_with("s3://raw/Account/j2.csv: ") && reasons[0].contains("column Balance"),
        "{reasons:?}"
    );
    assert!(reasons[1].starts_with("not a completion message: "), "{reasons:?}");
    assert_eq!(tables.depth().await.unwrap(), common::queue::QueueDepth::default(), "each settled once");
}

#[tokio::test]
async fn the_writer_expires_replaced_versions_once_its_queue_falls_idle_not_only_on_its_hourly_timer() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, services) = local_writer(dir.path()).await;
    let days = days();
    publish(&services, &days[..3]).await;
    let applied: Vec<_> = days[..3].iter().map(|(c, csv)| (c, *csv)).collect();
    let table_dir = dir.path().join("zuora-tables/Account");
    let all_applied_and_expired = async {
        loop {
            let table = writer.table("Account").await.unwrap();
            let current = table.snapshot().ok().map(|s| s.log_data().num_files());
            if current == Some(parquet_files(&table_dir)) && table_rows(&table).await == expected(&applied) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    // Keeping no replaced version; the writer stops once they are gone (or after a minute, failing below).
    let stop = tokio::time::timeout(std::time::Duration::from_secs(60), all_applied_and_expired);
    let wait = std::time::Duration::from_millis(20);
    run(writer.clone(), wait, std::time::Duration::ZERO, async { stop.await.unwrap_or(()) }).await;
    let table = writer.table("Account").await.unwrap();
    assert_eq!(table_rows(&table).await, expected(&applied), "every file applied");
    assert_eq!(parquet_files(&table_dir), table.snapshot().unwrap().log_data().num_files(), "replaced files left");
}

/// A table of many small files: a full load of rows f0.., then days of one new row each. A merge rewrites only the
/// files its Ids are in, so each day adds a small file. Every other day also deletes a row of the full load (a file
/// in the deletions table); the last days' query gained a field. The files, applied; their reference rows.
async fn table_of_small_files() -> (tempfile::TempDir, DeltaTable, Vec<(CompletionMessage, &'static str)>, Rows) {
    let (dir, mut table) = new_table().await;
    let (mut files, days) = (Vec::new(), 3 * COMPACT_AT);
    for day in 0..days {
        let widened = day + 2 >= days;
        let mut columns = COLUMNS.to_vec();
        let mut csv = "Account.IsDeleted,Account.Id,Account.Name,Account.Balance".to_owned();
        let extra = if widened {
            columns.push(("Account.Region", "text"));
            csv.push_str(",Account.Region");
            ",EU"
        } else {
            ""
        };
        csv.push('\n');
        if day == 0 {
            (0..days).for_each(|i| csv.push_str(&format!("false,f{i},Full {i},{i}{extra}\n")));
        }
        csv.push_str(&format!("false,n{day},Name {day},{day}{extra}\n"));
        if day % 2 == 1 {
            csv.push_str(&format!("true,f{day},,{}\n", if widened { "," } else { "" }));
        }
        let executed_at = format!("2026-11-{:02}T06:00:00Z", day + 1);
        files.push(file(&format!("d{day}"), &executed_at, day == 0, &columns, csv.leak()));
    }
    for (completion, csv) in &files {
        apply(&mut table, completion, &source(csv)).await.unwrap();
    }
    let applied: Vec<_> = files.iter().map(|(c, csv)| (c, *csv)).collect();
    let rows = table_rows(&table).await;
    assert_eq!(rows, expected(&applied));
    (dir, table, files, rows)
}

#[tokio::test]
async fn small_files_are_compacted_into_one_with_the_rows_the_transactions_and_the_deletions_kept() {
    let (dir, mut table, files, rows) = table_of_small_files().await;
    let before = table.snapshot().unwrap().log_data().num_files();
    assert!(before >= COMPACT_AT, "{before} data files");
    let version = table.version().unwrap();

    assert_eq!(compact(&mut table).await.unwrap(), before);
    assert_eq!(table.snapshot().unwrap().log_data().num_files(), 1);
    assert_eq!(table.version(), Some(version + 1), "one commit");
    assert_eq!(table_rows(&table).await, rows);
    assert_eq!(compact(&mut table).await.unwrap(), 0, "nothing small left");
    let (first, csv) = &files[1];
    assert_eq!(apply(&mut table, first, &source(csv)).await.unwrap(), Applied::AlreadyApplied);

    // The deletions table too, and both tables' replaced files expired.
    let done = table_writer::maintenance::maintain(&mut table, std::time::Duration::ZERO).await.unwrap();
    assert!(done.compacted >= COMPACT_AT && done.expired >= before, "{done:?}");
    assert_eq!(parquet_files(dir.path()), 1);
    assert_eq!(parquet_files(&dir.path().join("_zle_deleted")), 1);
    // A late file still finds the Ids deleted after it.
    let csv = "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,f1,Late,1\n";
    let (late, csv) = file("late", "2026-11-01T12:00:00Z", false, COLUMNS, csv);
    apply(&mut table, &late, &source(csv)).await.unwrap();
    assert_eq!(table_rows(&table).await, rows, "f1, deleted on day 1, stays deleted");
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (DuckDB and deltalake in its Python venv)"]
async fn duckdb_and_delta_rs_python_read_a_compacted_table_as_before() {
    let (dir, mut table, _, rows) = table_of_small_files().await;
    table_writer::maintenance::maintain(&mut table, std::time::Duration::ZERO).await.unwrap();
    let read = read_with_python(&[dir.path().as_os_str()]);
    for reader in ["duckdb", "deltalake"] {
        assert_eq!(rows_read_by(&read, reader), rows, "{reader}");
    }
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (moto's Glue)"]
async fn each_table_is_registered_in_the_glue_database_as_a_delta_table_and_an_existing_entry_is_kept() {
    let aws = test_support::aws_config();
    let glue = aws_sdk_glue::Client::new(&aws.load().await);
    let database = test_support::unique("zle").replace('-', "_");
    let input = aws_sdk_glue::types::DatabaseInput::builder().name(&database).build().unwrap();
    glue.create_database().database_input(input).send().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (writer, services) = local_writer(dir.path()).await;
    let writer = std::sync::Arc::into_inner(writer).unwrap().with_catalog(GlueCatalog::new(&aws, &database).await);
    publish(&services, &days()[..2]).await;
    let tables = services.queues.tables.clone().unwrap();
    while let Some(message) = tables.receive(1, std::time::Duration::ZERO).await.unwrap().pop() {
        writer.handle(&message).await.unwrap();
    }
    let entry = glue.get_table().database_name(&database).name("account").send().await.unwrap().table.unwrap();
    let parameters = entry.parameters.unwrap();
    assert_eq!((parameters["table_type"].as_str(), entry.table_type.as_deref()), ("DELTA", Some("EXTERNAL_TABLE")));
    let location = entry.storage_descriptor.unwrap().location.unwrap();
    assert_eq!(location, writer.table("Account").await.unwrap().table_url().to_string());
    // An entry an operator made (or another writer) is left as it is.
    let catalog = GlueCatalog::new(&aws, &database).await;
    assert!(!catalog.register("Account", "s3://elsewhere/Account/").await.unwrap());
    let kept = glue.get_table().database_name(&database).name("account").send().await.unwrap().table.unwrap();
    assert_eq!(kept.storage_descriptor.unwrap().location.unwrap(), location);
    assert!(catalog.register("Invoice", "s3://tables/Invoice/").await.unwrap(), "a new entry");
}
