//! The reference lake merger: what the lake's ETL does with the exported files, small enough to read, used to
//! check a lake against its source.
//!
//! Files are applied in the order Zuora produced them (`executedAt`); within a file, each record replaces the
//! previous version of its Id, and a record whose deleted flag is `true` (or `1`) removes the Id. Columns are
//! matched by header name, never by position (Zuora does not promise an order).

use std::collections::BTreeMap;

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
}
