//! Reading a lake as its ETL does: the published files (from their completion messages), merged per object with
//! the lake's rule (the latest record per Id wins, rows flagged deleted dropped), written out or compared.

use anyhow::{Context, bail};
use common::catalogue::{Catalogue, ObjectSpec};
use common::merge::MergedTable;
use common::messages::CompletionMessage;
use common::store::ObjectStore;
use std::collections::BTreeSet;
use std::io::Read;

/// Completion messages from a JSON-lines file (one message per line, as the lake queue delivers them).
pub fn completions_from_lines(text: &str) -> anyhow::Result<Vec<CompletionMessage>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).with_context(|| format!("line {}: not a completion message", n + 1))
        })
        .collect()
}

/// Completion messages from the metadata JSON written next to every published file of `objects`.
pub async fn completions_from_metadata(
    store: &dyn ObjectStore,
    objects: &[&ObjectSpec],
) -> anyhow::Result<Vec<CompletionMessage>> {
    let mut completions = Vec::new();
    let buckets: BTreeSet<&str> = objects.iter().map(|o| o.target.bucket.as_str()).collect();
    for bucket in buckets {
        for key in store.list(bucket, "").await?.iter().filter(|k| k.ends_with(".metadata.json")) {
            let Some(bytes) = store.get(bucket, key).await? else { continue };
            let completion = CompletionMessage::from_metadata_json(&bytes)
                .with_context(|| format!("s3://{bucket}/{key}: not a metadata JSON"))?;
            if objects.iter().any(|o| o.name == completion.object) {
                completions.push(completion);
            }
        }
    }
    Ok(completions)
}

/// A published file's CSV bytes, decompressed.
pub async fn file_csv(store: &dyn ObjectStore, file: &CompletionMessage) -> anyhow::Result<Vec<u8>> {
    let stored = store
        .get(&file.bucket, &file.key)
        .await?
        .with_context(|| format!("s3://{}/{}: announced but missing", file.bucket, file.key))?;
    let mut csv = Vec::new();
    match file.compression.as_str() {
        "none" => csv = stored.to_vec(),
        "gzip" => {
            flate2::read::MultiGzDecoder::new(stored.as_ref()).read_to_end(&mut csv)?;
        }
        "zstd" => csv = zstd::decode_all(stored.as_ref())?,
        other => bail!("s3://{}/{}: unknown compression {other:?}", file.bucket, file.key),
    }
    Ok(csv)
}

/// The header name of an object's column: exports label columns `Object.Column`.
pub fn column(object: &ObjectSpec, name: &str) -> String {
    format!("{}.{name}", object.name)
}

/// Merges an object's files in the order Zuora produced them (`executedAt`, then job id); a session's full load
/// (a first load, or Zuora starting the session again) replaces what came before it.
pub async fn merge_object(
    store: &dyn ObjectStore,
    object: &ObjectSpec,
    completions: &[CompletionMessage],
) -> anyhow::Result<MergedTable> {
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
            .with_context(|| format!("s3://{}/{}", file.bucket, file.key))?;
    }
    Ok(table)
}

/// A merged table as CSV: a header of every column (sorted), one row per Id (sorted).
pub fn to_csv(table: &MergedTable) -> anyhow::Result<Vec<u8>> {
    let columns: BTreeSet<&String> = table.rows.values().flat_map(|row| row.keys()).collect();
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&columns)?;
    for row in table.rows.values() {
        writer.write_record(columns.iter().map(|c| row.get(*c).map_or("", String::as_str)))?;
    }
    Ok(writer.into_inner()?)
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

/// The objects named (all of the catalogue when `names` is empty).
pub fn select<'a>(catalogue: &'a Catalogue, names: &[String]) -> anyhow::Result<Vec<&'a ObjectSpec>> {
    if names.is_empty() {
        return Ok(catalogue.objects.iter().collect());
    }
    catalogue.select(names).map_err(|unknown| anyhow::anyhow!("not in the catalogue: {}", unknown.join(", ")))
}

/// Records in a CSV file by an RFC 4180 parser (header excluded), and how many of them have the deleted flag set.
pub fn count_records(csv: &[u8], deleted_column: Option<&str>) -> anyhow::Result<(u64, u64)> {
    let mut reader = csv::Reader::from_reader(csv);
    let flag_at = deleted_column.and_then(|d| reader.headers().ok()?.iter().position(|h| h == d));
    let (mut records, mut deleted) = (0, 0);
    for record in reader.records() {
        let record = record?;
        records += 1;
        if flag_at.and_then(|i| record.get(i)).is_some_and(|f| f == "true" || f == "1") {
            deleted += 1;
        }
    }
    Ok((records, deleted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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

    #[test]
    fn records_are_counted_across_quoted_newlines_and_deleted_flags_read_by_name() {
        let csv = b"A.Id,A.IsDeleted,A.Note\n1,false,\"two\nlines\"\n2,true,\n";
        assert_eq!(count_records(csv, Some("A.IsDeleted")).unwrap(), (2, 1));
        assert_eq!(to_csv(&table(&[("1", "a,b")])).unwrap(), b"A.Name\n\"a,b\"\n");
    }
}
