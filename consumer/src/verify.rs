//! What a downloaded file must look like before it is published: a CSV export of the object, whole.
//!
//! The record count against Zuora's `recordCount` (checked by the worker over all of a batch's files) proves no
//! record was lost or added; the checks here prove the bytes are the file Zuora meant: a CSV body (not an error
//! page served with HTTP 200), a header naming the object's `Id` column and, first, its deleted flag (Zuora writes
//! the flag column first), every record as wide as the header, and a last record that ended (a file cut inside its
//! last record counts the same number of records).

use common::catalogue::ObjectSpec;
use common::csv_count::RecordCounter;

/// How Zuora sent a file.
#[derive(Debug, Clone, Copy)]
pub struct Sent<'a> {
    /// The response's `Content-Type`, if it had one.
    pub content_type: Option<&'a str>,
    /// The job asked for gzip files (`format: gzip`); the counter read them decompressed.
    pub gzip: bool,
}

/// Why a file is not the export it should be, or `Ok` when it is.
pub fn check_file(object: &ObjectSpec, sent: Sent<'_>, counter: &RecordCounter) -> Result<(), String> {
    if let Some(content_type) = sent.content_type {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        let (expected, what): (&[&str], _) =
            if sent.gzip { (&["application/x-gzip", "application/gzip"], "gzip") } else { (&["text/csv"], "CSV") };
        if !expected.iter().any(|e| media.eq_ignore_ascii_case(e)) {
            return Err(format!("Zuora sent {content_type:?}, not a {what} file"));
        }
    }
    if counter.records() == 0 {
        return Err("the file is empty: not even a header".to_owned());
    }
    if counter.ends_inside_quotes() {
        return Err("the file ends inside a quoted field: it was cut short".to_owned());
    }
    if !counter.ends_with_terminator() {
        return Err("the file does not end with a line terminator: it was cut inside its last record".to_owned());
    }
    let header = counter.header();
    let column = |name: &str| format!("{}.{name}", object.name);
    let id = column("Id");
    if !header.iter().any(|h| h.eq_ignore_ascii_case(&id)) {
        let start: String = header.join(",").chars().take(120).collect();
        return Err(format!("the header has no {id} column: {start:?}"));
    }
    if let Some(deleted) = object.deleted_column.as_deref().map(column)
        && !header[0].eq_ignore_ascii_case(&deleted)
    {
        return Err(format!("the header's first column is {:?}, not the deleted flag {deleted}", header[0]));
    }
    if let Some((record, fields)) = counter.first_ragged() {
        let expected = counter.header_fields().unwrap_or_default();
        return Err(format!("record {record} has {fields} fields, the header {expected}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::catalogue::Catalogue;

    fn account() -> ObjectSpec {
        Catalogue::builtin().objects.into_iter().find(|o| o.name == "Account").expect("Account is built in")
    }

    fn check(content_type: Option<&str>, text: &str) -> Result<(), String> {
        let mut counter = RecordCounter::new();
        for piece in text.as_bytes().chunks(7) {
            counter.feed(piece);
        }
        check_file(&account(), Sent { content_type, gzip: false }, &counter)
    }

    #[test]
    fn a_whole_export_passes() {
        let csv = "Account.IsDeleted,Account.Id,Account.Name\nfalse,1,\"a\nb\"\ntrue,2,\n";
        assert_eq!(check(Some("text/csv;charset=UTF-8"), csv), Ok(()));
        assert_eq!(check(None, "Account.IsDeleted,Account.Id\n"), Ok(()));
    }

    #[test]
    fn error_pages_empty_cut_and_ragged_files_fail_with_their_reason() {
        let fails = |content_type, text, reason: &str| {
            let error = check(content_type, text).expect_err(text);
            assert!(error.contains(reason), "{error:?} should say {reason:?}");
        };
        fails(Some("application/json;charset=utf-8"), "{\"success\":false}", "not a CSV file");
        fails(Some("text/html"), "<html></html>", "not a CSV file");
        let gzip = |content_type| check_file(&account(), Sent { content_type, gzip: true }, &RecordCounter::new());
        assert!(gzip(Some("text/csv;charset=UTF-8")).unwrap_err().contains("not a gzip file"));
        assert!(gzip(Some("application/x-gzip;charset=UTF-8")).unwrap_err().contains("empty"), "the type passes");
        fails(None, "{\"success\":false,\"reasons\":[]}", "not end with a line terminator");
        fails(None, "{\"success\":false}\n", "no Account.Id column");
        fails(None, "", "empty");
        fails(None, "Account.IsDeleted,Account.Id\nfalse,1\nfalse,2", "cut inside its last record");
        fails(None, "Account.IsDeleted,Account.Id\nfalse,\"1", "inside a quoted field");
        fails(None, "Account.Id,Account.IsDeleted\n1,false\n", "not the deleted flag");
        fails(None, "Account.IsDeleted,Account.Id\nfalse,1\nfalse\n", "record 2 has 1 fields, the header 2");
    }
}
