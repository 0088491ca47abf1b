//! Keeping a table lean without touching its rows: small data files compacted, replaced versions expired (both
//! commit no data change, so readers, time travel within the kept window and the application transactions of the
//! files applied are untouched), and deletions older than a late file can be expired from the deletions table.

use crate::delta::{DELETIONS_EXPIRED_BEFORE, DELETIONS_KEPT, conform, data_files, deletions_table, read_data_file};
use crate::error::ApplyError;
use crate::rows::EXECUTED_AT;
use arrow_array::BooleanArray;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use chrono::{DateTime, Utc};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, MetadataExt};
use deltalake::protocol::DeltaOperation;
use deltalake::table::config::TablePropertiesExt;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};

/// What one pass of [`maintain`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Maintained {
    /// Small data files rewritten into larger ones.
    pub compacted: usize,
    /// Files of replaced versions deleted.
    pub expired: usize,
    /// Deletions older than [`DELETIONS_KEPT`] dropped from the deletions table.
    pub deletions_expired: usize,
}

/// Expires the table's old deletions, compacts it and its deletions table, then expires the versions of both
/// replaced more than `keep` ago.
pub async fn maintain(table: &mut DeltaTable, keep: std::time::Duration) -> Result<Maintained, ApplyError> {
    let mut done = Maintained::default();
    if let Some(mut deletions) = deletions_table(table).await? {
        done.deletions_expired += expire_deletions(&mut deletions).await?;
        done.compacted += compact(&mut deletions).await?;
        done.expired += expire(&deletions, keep).await?;
    }
    done.compacted += compact(table).await?;
    done.expired += expire(table, keep).await?;
    Ok(done)
}

/// Drops the deletions older than [`DELETIONS_KEPT`] before the newest one from `deletions` (a table's deletions
/// table), and records the bound in its [`DELETIONS_EXPIRED_BEFORE`] property in the same commit, so the table
/// refuses a file older than that instead of bringing back a row whose deletion was dropped. Returns the deletions
/// dropped.
pub async fn expire_deletions(deletions: &mut DeltaTable) -> Result<usize, ApplyError> {
    let store = deletions.object_store();
    let files = data_files(deletions).await?;
    let mut read = Vec::with_capacity(files.len());
    let mut newest = i64::MIN;
    for file in &files {
        let batches = read_data_file(&store, file).await?;
        for batch in &batches {
            newest = newest.max(versions(batch)?.iter().flatten().max().unwrap_or(i64::MIN));
        }
        read.push((file, batches));
    }
    let Some(cutoff) = DateTime::<Utc>::from_timestamp_micros(newest).map(|newest| newest - DELETIONS_KEPT) else {
        return Ok(0);
    };
    let cutoff_micros = cutoff.timestamp_micros();
    let mut writer = RecordBatchWriter::for_table(deletions)?;
    let (mut actions, mut dropped) = (Vec::new(), 0);
    for (file, batches) in read {
        let (mut kept, before) = (Vec::new(), dropped);
        for batch in batches {
            let keep: BooleanArray =
                versions(&batch)?.iter().map(|v| Some(v.is_some_and(|v| v >= cutoff_micros))).collect();
            dropped += keep.iter().filter(|k| *k == Some(false)).count();
            kept.push(filter_record_batch(&batch, &keep)?);
        }
        if dropped > before {
            for batch in kept.into_iter().filter(|b| b.num_rows() > 0) {
                writer.write(batch).await?;
            }
            actions.push(Action::Remove(file.remove_action(true)));
        }
    }
    if dropped == 0 {
        return Ok(0);
    }
    let metadata = deletions.snapshot()?.metadata().clone();
    let marked = metadata
        .add_config_key(DELETIONS_EXPIRED_BEFORE.to_owned(), cutoff.to_rfc3339())
        .map_err(DeltaTableError::from)?;
    actions.push(Action::Metadata(marked));
    actions.extend(writer.flush().await?.into_iter().map(Action::Add));
    let operation = DeltaOperation::Delete { predicate: Some(format!("{EXECUTED_AT} < '{}'", cutoff.to_rfc3339())) };
    CommitBuilder::default()
        .with_actions(actions)
        .build(Some(deletions.snapshot()?), deletions.log_store(), operation)
        .await?;
    deletions.update_state().await?;
    Ok(dropped)
}

/// The `executedAt` column of a deletions batch, in microseconds.
fn versions(batch: &arrow_array::RecordBatch) -> Result<&arrow_array::TimestampMicrosecondArray, ApplyError> {
    let column = batch.column_by_name(EXECUTED_AT).ok_or_else(|| ApplyError::table("deletions: no version"))?;
    Ok(column.as_primitive::<TimestampMicrosecondType>())
}

/// How many small files a table gathers before they are compacted.
pub const COMPACT_AT: usize = 10;

/// Rewrites the table's small data files (under a quarter of its target size, 100 MiB unless
/// `delta.targetFileSize` says otherwise) into files of the target size, once there are [`COMPACT_AT`] of them. A
/// merge rewrites the files its Ids are in, so a table whose daily files are mostly new rows gains one small file a
/// day; this keeps the files a reader opens few. One small file is read at a time. Returns the files compacted.
pub async fn compact(table: &mut DeltaTable) -> Result<usize, ApplyError> {
    let target = table.snapshot()?.table_config().target_file_size().get();
    let small_below = i64::try_from(target / 4).unwrap_or(i64::MAX);
    let small: Vec<_> = data_files(table).await?.into_iter().filter(|f| f.size() < small_below).collect();
    if small.len() < COMPACT_AT {
        return Ok(0);
    }
    let mut writer = RecordBatchWriter::for_table(table)?.with_target_file_size(target);
    let schema = writer.arrow_schema();
    let store = table.object_store();
    let mut actions = Vec::new();
    for file in &small {
        for batch in read_data_file(&store, file).await? {
            writer.write(conform(batch, &schema)?).await?;
        }
        actions.push(Action::Remove(file.remove_action(false)));
    }
    for mut add in writer.flush().await? {
        add.data_change = false;
        actions.push(Action::Add(add));
    }
    let operation = DeltaOperation::Optimize { predicate: None, target_size: target as i64 };
    CommitBuilder::default().with_actions(actions).build(Some(table.snapshot()?), table.log_store(), operation).await?;
    table.update_state().await?;
    Ok(small.len())
}

/// Deletes the data files that versions older than `keep` removed (a merged file's earlier copies, compacted small
/// files), leaving the table's current files and the versions of the last `keep` to time travel. Only files the log
/// says were removed are deleted (delta-rs's `lite` vacuum: never a file of another writer's commit in flight, never
/// the deletions table beside the data), and no data changes: commits go on while it runs. Returns the files
/// deleted.
pub async fn expire(table: &DeltaTable, keep: std::time::Duration) -> Result<usize, DeltaTableError> {
    let keep = chrono::Duration::from_std(keep).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
    let (_, metrics) = table
        .clone()
        .vacuum()
        .with_mode(deltalake::operations::vacuum::VacuumMode::Lite)
        .with_retention_period(keep)
        .with_enforce_retention_duration(false)
        .await?;
    Ok(metrics.files_deleted.len())
}
