//! The reference lake merger: what the lake's ETL does with the exported files, small enough to read, used to
//! check a lake against its source (the quick start, `lake-merge`, the chaos oracle, `producer audit`).
//!
//! Files are applied in the order Zuora produced them (`executedAt`); within a file, each record replaces the
//! previous version of its Id, and a record whose deleted flag is `true` (or `1`) removes the Id. Columns are
//! matched by header name, never by position (Zuora does not promise an order). A session's full load (a first
//! load, or Zuora starting the session again) replaces what came before it.

use crate::catalogue::ObjectSpec;
use crate::messages::CompletionMessage;
use crate::store::ObjectStore;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

/// A merged table: the live rows by Id, each as a map from column name to value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergedTable {
    /// Rows by Id.
    pub rows: BTreeMap<String, BTreeMap<String, String>>,
}

/// A file that could not be merged.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MergeError(String);

impl MergedTable {
    /// Applies one CSV file (header first) on top of the table. `id_column` names the Id (e.g. `Account.Id`);
    /// `deleted_column` the flag, if the file has one.
    pub fn apply(&mut self, csv: &[u8], id_column: &str, deleted_column: Option<&str>) -> Result<(), MergeError> {
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(csv);
        let header: Vec<String> =
            reader.headers().map_err(|e| MergeError(format!("header: {e}")))?.iter().map(str::to_owned).collect();
        let id_at =
            header.iter().position(|h| h == id_column).ok_or_else(|| MergeError(format!("no column {id_column}")))?;
        let deleted_at = deleted_column.and_then(|d| header.iter().position(|h| h == d));
        for record in reader.records() {
            let record = record.map_err(|e| MergeError(format!("record: {e}")))?;
            let id = record.get(id_at).unwrap_or_default().to_owned();
            let deleted = deleted_at.and_then(|i| record.get(i)).is_some_and(|flag| flag == "true" || flag == "1");
            if deleted {
                self.rows.remove(&id);
                continue;
            }
            let row = header
                .iter()
                .zip(record.iter())
                .filter(|(name, _)| Some(name.as_str()) != deleted_column)
                .map(|(name, value)| (name.clone(), value.to_owned()))
                .collect();
            self.rows.insert(id, row);
        }
        Ok(())
    }
}

/// Completion messages from the metadata JSON written next to every published file of `objects`.
pub async fn completions_from_metadata(
    store: &dyn ObjectStore,
    objects: &[&ObjectSpec],
) -> Result<Vec<CompletionMessage>, MergeError> {
    let mut completions = Vec::new();
    let buckets: BTreeSet<&str> = objects.iter().map(|o| o.target.bucket.as_str()).collect();
    for bucket in buckets {
        let keys = store.list(bucket, "").await.map_err(|e| MergeError(e.to_string()))?;
        for key in keys.iter().filter(|k| k.ends_with(".metadata.json")) {
            let Some(bytes) = store.get(bucket, key).await.map_err(|e| MergeError(e.to_string()))? else { continue };
            let completion = CompletionMessage::from_metadata_json(&bytes)
                .map_err(|e| MergeError(format!("s3://{bucket}/{key}: not a metadata JSON: {e}")))?;
            if objects.iter().any(|o| o.name == completion.object) {
                completions.push(completion);
            }
        }
    }
    Ok(completions)
}

/// A published file's CSV bytes, decompressed.
pub async fn file_csv(store: &dyn ObjectStore, file: &CompletionMessage) -> Result<Vec<u8>, MergeError> {
    let at = || format!("s3://{}/{}", file.bucket, file.key);
    let stored = store
        .get(&file.bucket, &file.key)
        .await
        .map_err(|e| MergeError(e.to_string()))?
        .ok_or_else(|| MergeError(format!("{}: announced but missing", at())))?;
    let mut csv = Vec::new();
    let unreadable = |e: std::io::Error| MergeError(format!("{}: {e}", at()));
    match file.compression.as_str() {
        "none" => csv = stored.to_vec(),
        "gzip" => {
            flate2::read::MultiGzDecoder::new(stored.as_ref()).read_to_end(&mut csv).map_err(unreadable)?;
        }
        "zstd" => csv = zstd::decode_all(stored.as_ref()).map_err(unreadable)?,
        other => return Err(MergeError(format!("{}: unknown compression {other:?}", at()))),
    }
    Ok(csv)
}

/// The header name of an object's column: exports label columns `Object.Column`.
pub fn column(object: &ObjectSpec, name: &str) -> String {
    format!("{}.{name}", object.name)
}

/// Merges an object's files in the order Zuora produced them (`executedAt`, then job id and segment).
pub async fn merge_object(
    store: &dyn ObjectStore,
    object: &ObjectSpec,
    completions: &[CompletionMessage],
) -> Result<MergedTable, MergeError> {
    let mut files: Vec<&CompletionMessage> = completions.iter().filter(|c| c.object == object.name).collect();
    files.sort_by(|a, b| (a.executed_at, &a.job_id, a.segment).cmp(&(b.executed_at, &b.job_id, b.segment)));
    let deleted = object.deleted_column.as_deref().map(|d| column(object, d));
    let mut table = MergedTable::default();
    for file in files {
        if file.replaces_the_table() && file.segment == 0 {
            table = MergedTable::default();
        }
        let csv = file_csv(store, file).await?;
        table
            .apply(&csv, &column(object, "Id"), deleted.as_deref())
            .map_err(|e| MergeError(format!("s3://{}/{}: {e}", file.bucket, file.key)))?;
    }
    Ok(table)
}

/// The first `limit` differences between a merged lake table and the expected one, compared on the lake's columns
/// (an export selects some of an object's fields, the expected table may have more).
pub fn differences(lake: &MergedTable, expected: &MergedTable, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (id, row) in &lake.rows {
        match expected.rows.get(id) {
            None => out.push(format!("{id}: in the lake, not expected")),
            Some(want) => {
                for (column, value) in row {
                    let wanted = want.get(column).map_or("(no such column)", String::as_str);
                    if value != wanted {
                        out.push(format!("{id}: {column} is {value:?}, expected {wanted:?}"));
                    }
                }
            }
        }
    }
    out.extend(expected.rows.keys().filter(|id| !lake.rows.contains_key(*id)).map(|id| format!("{id}: missing")));
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_versions_win_deleted_rows_go_and_columns_match_by_name() {
        let mut table = MergedTable::default();
        let full = "A.IsDeleted,A.Id,A.Name\nfalse,1,one\nfalse,2,\"t,wo\"\nfalse,3,three\n";
        let increment = "A.Name,A.IsDeleted,A.Id\n\"one\nagain\",false,1\n,true,3\nfour,false,4\n";
        table.apply(full.as_bytes(), "A.Id", Some("A.IsDeleted")).unwrap();
        table.apply(increment.as_bytes(), "A.Id", Some("A.IsDeleted")).unwrap();
        let names: Vec<(&str, &str)> =
            table.rows.iter().map(|(id, row)| (id.as_str(), row["A.Name"].as_str())).collect();
        assert_eq!(names, [("1", "one\nagain"), ("2", "t,wo"), ("4", "four")]);
        assert!(table.apply(b"B.X\n1\n", "A.Id", None).is_err());
    }

    fn table(rows: &[(&str, &str)]) -> MergedTable {
        let row = |name: &str| BTreeMap::from([("A.Name".to_owned(), name.to_owned())]);
        MergedTable { rows: rows.iter().map(|(id, name)| (id.to_string(), row(name))).collect() }
    }

    #[test]
    fn differences_name_the_row_and_column() {
        let lake = table(&[("1", "one"), ("2", "two"), ("4", "four")]);
        let expected = table(&[("1", "one"), ("2", "TWO"), ("3", "three")]);
        assert_eq!(
            differences(&lake, &expected, 10),
            [r#"2: A.Name is "two", expected "TWO""#, "4: in the lake, not expected", "3: missing"]
        );
        assert!(differences(&lake, &lake, 10).is_empty());
    }
}
