//! The local tools' side of reading a lake (the merge itself is `common::merge`): completions from a JSON-lines
//! file, merged tables written out as CSV, objects chosen by name, records counted.

use anyhow::Context;
use common::catalogue::{Catalogue, ObjectSpec};
use common::merge::MergedTable;
use common::messages::CompletionMessage;
use std::collections::BTreeSet;

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

    #[test]
    fn records_are_counted_across_quoted_newlines_and_deleted_flags_read_by_name() {
        let csv = b"A.Id,A.IsDeleted,A.Note\n1,false,\"two\nlines\"\n2,true,\n";
        assert_eq!(count_records(csv, Some("A.IsDeleted")).unwrap(), (2, 1));
        let row = BTreeMap::from([("A.Name".to_owned(), "a,b".to_owned())]);
        let table = MergedTable { rows: BTreeMap::from([("1".to_owned(), row)]) };
        assert_eq!(to_csv(&table).unwrap(), b"A.Name\n\"a,b\"\n");
    }
}
