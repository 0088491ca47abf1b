//! One object's Delta Lake table, kept equal to Zuora as of the last file applied (docs/tables.md).
//!
//! Each published file is one commit, made through delta-rs's own commit protocol (`CommitBuilder`: conflict
//! checks, retries, checkpoints); this module only decides which data files the commit adds and removes:
//! - a file that replaces the table (`full: true` of an increment, its first segment) covers every Id: every data
//!   file is rewritten without the rows older than it, and the file's live rows are added. The load's other
//!   segments have its `executedAt`: applied before the first (a first segment dead-lettered and redriven), their
//!   rows stay;
//! - any other file is merged copy-on-write: every data file holding an Id of the file is rewritten without the
//!   versions the file supersedes, and the file's live rows are added. A row's version is the `executedAt` of the
//!   file it came from ([`EXECUTED_AT`]): a file applied late (published after a newer one) never overwrites a newer
//!   version of a row.
//!
//! Every commit records the file's deduplication id as an application transaction (`txn`: app id
//! `zuora-lake-export:<jobId>:<batchId>:<segment>`, version its `executedAt` in milliseconds): a completion
//! delivered again finds it and is not applied twice, whatever happened in between.
//!
//! A row deleted by a newer file leaves no row to be newer than an older file's version of it, so the table keeps
//! what a late file needs besides its rows:
//! - the `executedAt` of the newest full load that replaced it, a table property ([`FULL_LOAD_AT`]) set in the
//!   replacing commit itself: a file older than that load is superseded whole (the load has every live row, and
//!   a row it lacks was deleted);
//! - the Ids deleted by merged files, with the `executedAt` of the file that deleted them, in a Delta table of its
//!   own beside the data ([`DELETED_TABLE`], inside the table's directory, where readers and vacuum do not look),
//!   committed before the file's own commit under the same application transaction: a late file's version of a
//!   deleted Id is dropped. A crash between the two commits leaves a deletion recorded ahead of its file, which is
//!   applied when its completion comes back.

use crate::error::ApplyError;
use crate::rows::{ColumnType, EXECUTED_AT, Layout, Refused};
use crate::source::FileSource;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema};
use chrono::{DateTime, Utc};
use common::messages::CompletionMessage;
use deltalake::arrow::compute::filter_record_batch;
use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, LogicalFileView, Metadata, MetadataExt, StructField, StructType, Transaction};
use deltalake::logstore::ObjectStoreRef;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::config::TablePropertiesExt;
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use deltalake::{DeltaTable, DeltaTableError};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What applying a file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Committed as table version `version`.
    Committed {
        /// The table's new version.
        version: u64,
        /// Data files rewritten or removed.
        files_removed: usize,
        /// Live rows of the file added.
        rows_added: u64,
    },
    /// The table already records the file's transaction: nothing done.
    AlreadyApplied,
    /// The file is older than the full load that last replaced the table, which supersedes every row of it:
    /// nothing done.
    Superseded {
        /// The `executedAt` of that full load.
        full_load_at: DateTime<Utc>,
    },
}

/// The table property holding the `executedAt` (RFC 3339) of the newest full load that replaced the table.
pub const FULL_LOAD_AT: &str = "zuoraLakeExport.fullLoadAt";

/// How long the deletions table keeps a deletion, from the newest one: the longest a file can come after a newer
/// file deleted a row it has. Zuora keeps a job's files 72 hours (after that the consumer asks again: a new job, a
/// new `executedAt`), and a completion waits at most 14 days on the lake and tables queues (their retention), so
/// 17 days. A file older than the deletions expired is refused ([`DELETIONS_EXPIRED_BEFORE`]).
pub const DELETIONS_KEPT: chrono::TimeDelta = chrono::TimeDelta::days(17);

/// The property of a deletions table holding the `executedAt` (RFC 3339) before which its deletions were expired
/// (`maintenance::expire_deletions`): a file older than that could bring back a row deleted since, and is
/// refused.
pub const DELETIONS_EXPIRED_BEFORE: &str = "zuoraLakeExport.deletionsExpiredBefore";

/// The directory, inside a table's, of the Delta table of the Ids deleted by its merged files.
pub const DELETED_TABLE: &str = "_zle_deleted/";

/// The application transaction id of a file: its deduplication id, under this project's name.
pub fn app_id(completion: &CompletionMessage) -> String {
    format!("zuora-lake-export:{}", completion.deduplication_id())
}

/// Applies one published file, read from `source`, to its object's table `table`, creating the table on its first
/// file. The file is read twice when it is merged (its Ids first, then its rows), a batch at a time; a file whose
/// records differ in number from its completion's `recordCount` is refused.
pub async fn apply(
    table: &mut DeltaTable,
    completion: &CompletionMessage,
    source: &FileSource,
) -> Result<Applied, ApplyError> {
    let schema = completion
        .schema
        .as_ref()
        .ok_or_else(|| Refused("the completion has no schema (a release before 2026-12 published it)".to_owned()))?;
    let layout = Layout::of(&completion.object, schema)?;
    let app_id = app_id(completion);
    let full_load_at = if table.version().is_some() {
        if recorded(table, &app_id).await? {
            return Ok(Applied::AlreadyApplied);
        }
        full_load_at(table)?
    } else {
        create(table, &completion.object, &layout.schema).await?;
        None
    };
    if let Some(full_load_at) = full_load_at.filter(|at| completion.executed_at < *at) {
        return Ok(Applied::Superseded { full_load_at });
    }
    let replaces = completion.replaces_the_table() && completion.segment == 0;
    let evolved = evolve(table, &layout)?;
    let metadata = if replaces { Some(marked_full_load(table, evolved, completion.executed_at)?) } else { evolved };
    let executed_at = completion.executed_at.timestamp_micros();
    let mut actions: Vec<Action> = Vec::new();
    // Ids whose row is newer than the file, or deleted by a newer file: the file's version of them is dropped.
    let deletions = deletions_table(table).await?;
    if let Some(expired_before) = property_time(deletions.as_ref(), DELETIONS_EXPIRED_BEFORE)?
        && completion.executed_at < expired_before
    {
        return Err(Refused(format!(
            "Zuora ran the file at {}, before {}, the oldest deletion the table still knows \
             (deletions are kept {} days): applied, it could bring back rows deleted since. Export its window again \
             instead (producer backfill)",
            completion.executed_at.to_rfc3339(),
            expired_before.to_rfc3339(),
            DELETIONS_KEPT.num_days()
        ))
        .into());
    }
    let mut keep_newer = deleted_after(deletions.as_ref(), executed_at).await?;
    // Data files of the table's target size (100 MiB unless `delta.targetFileSize` says otherwise), not one file
    // per commit: a merge reads a rewritten file whole, so the file's size bounds its memory.
    let target_file_size = table.snapshot()?.table_config().target_file_size().get();
    let mut writer = RecordBatchWriter::for_table(table)?.with_target_file_size(target_file_size);
    let (table_schema, mode) = match metadata {
        Some((metadata, schema)) => {
            actions.push(Action::Metadata(metadata));
            (Arc::new((&schema).try_into_arrow()?), WriteMode::MergeSchema)
        }
        None => (writer.arrow_schema(), WriteMode::Default),
    };
    let mut files_removed = 0;
    // The Ids the file covers: all of them when it replaces the table.
    let (ids, deleted) = if replaces {
        (None, Vec::new())
    } else {
        let (ids, deleted) = file_ids(&layout, source, completion).await?;
        (Some(ids), deleted)
    };
    let store = table.object_store();
    for file in data_files(table).await? {
        let mut kept = Vec::new();
        let mut rewritten = false;
        for batch in read_data_file(&store, &file).await? {
            let (keep, dropped) = superseded(&batch, layout.id_column(), ids.as_ref(), executed_at, &mut keep_newer)?;
            rewritten |= dropped;
            kept.push(filter_record_batch(&batch, &keep)?);
        }
        if rewritten {
            for batch in kept.into_iter().filter(|b| b.num_rows() > 0) {
                writer.write_with_mode(conform(batch, &table_schema)?, mode).await?;
            }
            actions.push(Action::Remove(file.remove_action(true)));
            files_removed += 1;
        }
    }
    let (mut rows_added, mut records) = (0, 0);
    let mut reading = source.read(completion, &layout).await?;
    while let Some(rows) = reading.next().await {
        let rows = rows?;
        records += (rows.upserts.num_rows() + rows.deleted.len()) as u64;
        let batch =
            if keep_newer.is_empty() { rows.upserts } else { without(&rows.upserts, layout.id_column(), &keep_newer)? };
        rows_added += batch.num_rows() as u64;
        if batch.num_rows() > 0 {
            writer.write_with_mode(conform(batch, &table_schema)?, mode).await?;
        }
    }
    if records != completion.record_count {
        return Err(Refused(format!("{records} records read, the completion says {}", completion.record_count)).into());
    }
    actions.extend(writer.flush().await?.into_iter().map(Action::Add));
    // A replacement is a merge that also deletes the rows the file does not have (unless newer than it).
    let operation = DeltaOperation::Merge {
        predicate: None,
        merge_predicate: Some(format!("target.{0} = source.{0}", layout.id_column())),
        matched_predicates: Vec::new(),
        not_matched_predicates: Vec::new(),
        not_matched_by_source_predicates: Vec::new(),
    };
    let properties = CommitProperties::default()
        .with_application_transaction(Transaction::new(&app_id, completion.executed_at.timestamp_millis()))
        .with_metadata([
            ("zuoraLakeExport.deduplicationId".to_owned(), completion.deduplication_id().into()),
            ("zuoraLakeExport.key".to_owned(), completion.key.clone().into()),
        ]);
    record_deletions(table, deletions, &deleted, completion, &properties).await?;
    let committed = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await?;
    table.update_state().await?;
    Ok(Applied::Committed { version: committed.version(), files_removed, rows_added })
}

/// Creates the table with the file's columns.
/// Creates `table` named `name` with the columns of `schema`.
async fn create(table: &mut DeltaTable, name: &str, schema: &Schema) -> Result<(), ApplyError> {
    let schema: StructType = schema.try_into_kernel()?;
    let created = table
        .create()
        .with_table_name(name)
        .with_columns(schema.fields().cloned())
        .with_save_mode(SaveMode::Ignore)
        .await?;
    *table = created;
    Ok(())
}

/// The table's metadata and schema with the file's columns it lacks added (a query that gained a field), or
/// `None` when it has them all. A column whose type differs from the table's refuses the file.
fn evolve(table: &DeltaTable, layout: &Layout) -> Result<Option<(Metadata, StructType)>, ApplyError> {
    let snapshot = table.snapshot()?;
    let current = snapshot.schema();
    let wanted: StructType = layout.schema.as_ref().try_into_kernel()?;
    let mut fields: Vec<StructField> = current.fields().cloned().collect();
    let mut added = false;
    for field in wanted.fields() {
        match current.field(field.name()) {
            Some(existing) if existing.data_type() != field.data_type() => {
                return Err(Refused(format!(
                    "column {} is {} in the file and {} in the table",
                    field.name(),
                    field.data_type(),
                    existing.data_type()
                ))
                .into());
            }
            Some(_) => {}
            None => {
                fields.push(field.clone());
                added = true;
            }
        }
    }
    if !added {
        return Ok(None);
    }
    let refused = |e: &dyn std::fmt::Display| Refused(format!("the table's new schema: {e}"));
    let schema = StructType::try_new(fields).map_err(|e| refused(&e))?;
    let metadata = snapshot.metadata().clone().with_schema(&schema).map_err(|e| refused(&e))?;
    Ok(Some((metadata, schema)))
}

/// The file's Ids, and those of its deleted rows.
async fn file_ids(
    layout: &Layout,
    source: &FileSource,
    completion: &CompletionMessage,
) -> Result<(HashSet<String>, Vec<String>), ApplyError> {
    let (mut ids, mut deleted) = (HashSet::new(), Vec::new());
    let mut reading = source.read(completion, layout).await?;
    while let Some(rows) = reading.next().await {
        let rows = rows?;
        ids.extend(rows.deleted.iter().cloned());
        deleted.extend(rows.deleted);
        ids.extend(id_values(&rows.upserts, layout.id_column())?);
    }
    Ok((ids, deleted))
}

/// The `executedAt` of the newest full load that replaced the table ([`FULL_LOAD_AT`]).
fn full_load_at(table: &DeltaTable) -> Result<Option<DateTime<Utc>>, ApplyError> {
    property_time(Some(table), FULL_LOAD_AT)
}

/// The time (RFC 3339) in `table`'s property `name`, if the table and the property exist.
fn property_time(table: Option<&DeltaTable>, name: &str) -> Result<Option<DateTime<Utc>>, ApplyError> {
    let Some(table) = table else { return Ok(None) };
    let snapshot = table.snapshot()?;
    let Some(text) = snapshot.metadata().configuration().get(name) else { return Ok(None) };
    let at = DateTime::parse_from_rfc3339(text).map_err(|e| ApplyError::table(format!("{name} {text:?}: {e}")))?;
    Ok(Some(at.to_utc()))
}

/// The table's metadata and schema (as evolved for the file, if it was) marked as replaced by a full load at `at`.
fn marked_full_load(
    table: &DeltaTable,
    evolved: Option<(Metadata, StructType)>,
    at: DateTime<Utc>,
) -> Result<(Metadata, StructType), ApplyError> {
    let (metadata, schema) = match evolved {
        Some(evolved) => evolved,
        None => {
            let snapshot = table.snapshot()?;
            (snapshot.metadata().clone(), snapshot.schema().as_ref().clone())
        }
    };
    let marked = metadata.add_config_key(FULL_LOAD_AT.to_owned(), at.to_rfc3339()).map_err(DeltaTableError::from)?;
    Ok((marked, schema))
}

/// The table of the Ids deleted by `table`'s merged files ([`DELETED_TABLE`]), loaded; `None` until the first
/// deletion creates it.
pub async fn deletions_table(table: &DeltaTable) -> Result<Option<DeltaTable>, ApplyError> {
    if !has_log(table, DELETED_TABLE).await? {
        return Ok(None);
    }
    let mut deletions = deletions_builder(table)?.build()?;
    deletions.load().await?;
    Ok(Some(deletions))
}

/// Whether the table at `prefix` under `table` (`""`: `table` itself) has a log, i.e. has been created.
pub async fn has_log(table: &DeltaTable, prefix: &str) -> Result<bool, ApplyError> {
    let log = object_store::path::Path::from(format!("{prefix}_delta_log/"));
    Ok(table.object_store().list(Some(&log)).try_next().await.map_err(DeltaTableError::from)?.is_some())
}

/// The deletions table of `table`, on the same storage with the same options.
fn deletions_builder(table: &DeltaTable) -> Result<deltalake::DeltaTableBuilder, ApplyError> {
    let url = table.table_url().join(DELETED_TABLE).map_err(ApplyError::table)?;
    let options = table.log_store().config().options().raw.clone();
    Ok(deltalake::DeltaTableBuilder::from_url(url)?.with_storage_options(options))
}

/// Whether `table` records the application transaction `app_id`.
async fn recorded(table: &DeltaTable, app_id: &str) -> Result<bool, ApplyError> {
    Ok(table.snapshot()?.transaction_version(table.log_store().as_ref(), app_id).await?.is_some())
}

/// The Ids of `deletions` deleted by files newer than `executed_at` (microseconds).
async fn deleted_after(deletions: Option<&DeltaTable>, executed_at: i64) -> Result<HashSet<String>, ApplyError> {
    let mut ids = HashSet::new();
    let Some(deletions) = deletions else { return Ok(ids) };
    for batch in scan(deletions).await? {
        let versions = batch.column_by_name(EXECUTED_AT).ok_or_else(|| ApplyError::table("deletions: no version"))?;
        let versions = versions.as_primitive::<TimestampMicrosecondType>();
        let newer: BooleanArray = versions.iter().map(|v| Some(v.is_some_and(|v| v > executed_at))).collect();
        ids.extend(id_values(&filter_record_batch(&batch, &newer)?, DELETED_ID)?);
    }
    Ok(ids)
}

/// The deletions table's columns: the deleted Id, and the `executedAt` of the file that deleted it.
const DELETED_ID: &str = "Id";

/// Records the Ids `completion`'s file deletes, before the file's own commit and under its application
/// transaction, so that recording them again is a no-op.
async fn record_deletions(
    table: &DeltaTable,
    deletions: Option<DeltaTable>,
    deleted: &[String],
    completion: &CompletionMessage,
    properties: &CommitProperties,
) -> Result<(), ApplyError> {
    if deleted.is_empty() {
        return Ok(());
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new(DELETED_ID, DataType::Utf8, false),
        Field::new(EXECUTED_AT, ColumnType::Timestamp.arrow(), false),
    ]));
    let deletions = match deletions {
        Some(deletions) if recorded(&deletions, &app_id(completion)).await? => return Ok(()),
        Some(deletions) => deletions,
        None => {
            let mut deletions = deletions_builder(table)?.build()?;
            create(&mut deletions, &format!("{} deletions", completion.object), &schema).await?;
            deletions
        }
    };
    let executed_at = completion.executed_at.timestamp_micros();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(deleted)),
            Arc::new(TimestampMicrosecondArray::from(vec![executed_at; deleted.len()]).with_timezone("UTC")),
        ],
    )?;
    let mut writer = RecordBatchWriter::for_table(&deletions)?;
    writer.write(batch).await?;
    let actions = writer.flush().await?.into_iter().map(Action::Add).collect();
    let operation = DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None };
    CommitBuilder::from(properties.clone())
        .with_actions(actions)
        .build(Some(deletions.snapshot()?), deletions.log_store(), operation)
        .await?;
    Ok(())
}

/// The Ids in `batch`'s column `id_column`.
fn id_values<'a>(batch: &'a RecordBatch, id_column: &str) -> Result<impl Iterator<Item = String> + 'a, Refused> {
    let column = batch.column_by_name(id_column).ok_or_else(|| Refused(format!("no column {id_column}")))?;
    Ok(column.as_string::<i32>().iter().flatten().map(str::to_owned))
}

/// Which rows of a table batch stay (`true`), and whether any goes: a row goes when the file covers its Id (`ids`)
/// and the row is not newer than the file; a newer row stays, and its Id is kept out of the file's rows
/// (`keep_newer`). When the file replaces the table (`ids` is `None`: every Id) a row as new as the file stays too:
/// it is a row of the same full load's other segments.
fn superseded(
    batch: &RecordBatch,
    id_column: &str,
    ids: Option<&HashSet<String>>,
    executed_at: i64,
    keep_newer: &mut HashSet<String>,
) -> Result<(BooleanArray, bool), Refused> {
    let missing = |name: &str| Refused(format!("the table has no column {name}"));
    let id = batch.column_by_name(id_column).ok_or_else(|| missing(id_column))?.as_string::<i32>();
    let versions = batch.column_by_name(EXECUTED_AT).ok_or_else(|| missing(EXECUTED_AT))?;
    let versions = versions.as_primitive::<TimestampMicrosecondType>();
    let mut dropped = false;
    let keep: BooleanArray = (0..batch.num_rows())
        .map(|row| {
            let Some(row_id) = id.is_valid(row).then(|| id.value(row)) else { return Some(true) };
            if ids.is_some_and(|ids| !ids.contains(row_id)) {
                return Some(true);
            }
            let newer = versions.value(row) > executed_at || (ids.is_none() && versions.value(row) == executed_at);
            if newer {
                keep_newer.insert(row_id.to_owned());
                return Some(true);
            }
            dropped = true;
            Some(false)
        })
        .collect();
    Ok((keep, dropped))
}

/// `batch` without the rows whose Id is in `ids`.
fn without(batch: &RecordBatch, id_column: &str, ids: &HashSet<String>) -> Result<RecordBatch, ApplyError> {
    let id = batch.column_by_name(id_column).ok_or_else(|| Refused("no Id".into()))?.as_string::<i32>();
    let keep: BooleanArray = id.iter().map(|v| Some(v.is_none_or(|v| !ids.contains(v)))).collect();
    Ok(filter_record_batch(batch, &keep)?)
}

/// `batch` with the table's columns, in the table's order: a column the batch lacks (one the table gained after
/// the batch's file was written, or one the file's query no longer selects) is null.
pub(crate) fn conform(
    batch: RecordBatch,
    table: &deltalake::arrow::datatypes::SchemaRef,
) -> Result<RecordBatch, ApplyError> {
    let schema = batch.schema();
    let by_name: HashMap<&str, usize> =
        schema.fields().iter().enumerate().map(|(i, f)| (f.name().as_str(), i)).collect();
    let columns = table
        .fields()
        .iter()
        .map(|field| match by_name.get(field.name().as_str()) {
            Some(&i) => batch.column(i).clone(),
            None => deltalake::arrow::array::new_null_array(field.data_type(), batch.num_rows()),
        })
        .collect();
    Ok(RecordBatch::try_new(table.clone(), columns)?)
}

fn parquet_error(e: deltalake::parquet::errors::ParquetError) -> ApplyError {
    ApplyError::Table(DeltaTableError::Parquet { source: e })
}

/// The table's data files.
pub(crate) async fn data_files(table: &DeltaTable) -> Result<Vec<LogicalFileView>, DeltaTableError> {
    table.snapshot()?.snapshot().file_views(table.log_store().as_ref(), None).try_collect().await
}

/// The rows of one data file.
pub(crate) async fn read_data_file(
    store: &ObjectStoreRef,
    file: &LogicalFileView,
) -> Result<Vec<RecordBatch>, ApplyError> {
    let bytes = store.get(&file.object_store_path()).await.map_err(DeltaTableError::from)?.bytes().await;
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(bytes.map_err(DeltaTableError::from)?).map_err(parquet_error)?;
    Ok(reader.build().map_err(parquet_error)?.collect::<Result<_, _>>()?)
}

/// The number of rows in the table, as its log records them (each data file's `numRecords`).
pub async fn row_count(table: &DeltaTable) -> Result<u64, DeltaTableError> {
    data_files(table)
        .await?
        .iter()
        .map(|f| {
            f.num_records()
                .map(|n| n as u64)
                .ok_or_else(|| DeltaTableError::Generic(format!("{}: no numRecords", f.path())))
        })
        .sum()
}

/// Every row of the table, read from its data files.
pub async fn scan(table: &DeltaTable) -> Result<Vec<RecordBatch>, ApplyError> {
    let store = table.object_store();
    let mut out = Vec::new();
    for file in data_files(table).await? {
        out.extend(read_data_file(&store, &file).await?);
    }
    Ok(out)
}

/// The Ids of the table's rows (its `Id` column).
pub async fn ids(table: &DeltaTable) -> Result<std::collections::BTreeSet<String>, ApplyError> {
    let mut ids = std::collections::BTreeSet::new();
    for batch in scan(table).await? {
        ids.extend(id_values(&batch, "Id")?);
    }
    Ok(ids)
}
