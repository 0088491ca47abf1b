//! Keeping a table lean without touching its rows: small data files compacted, replaced versions expired. Both
//! commit no data change, so readers, time travel within the kept window and the application transactions of the
//! files applied are untouched.

use crate::delta::{conform, data_files, deletions_table, read_data_file};
use crate::error::ApplyError;
use deltalake::kernel::Action;
use deltalake::kernel::transaction::CommitBuilder;
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
}

/// Compacts `table` and its deletions table, then expires the versions of both replaced more than `keep` ago.
pub async fn maintain(table: &mut DeltaTable, keep: std::time::Duration) -> Result<Maintained, ApplyError> {
    let mut done = Maintained::default();
    if let Some(mut deletions) = deletions_table(table).await? {
        done.compacted += compact(&mut deletions).await?;
        done.expired += expire(&deletions, keep).await?;
    }
    done.compacted += compact(table).await?;
    done.expired += expire(table, keep).await?;
    Ok(done)
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
