//! Completion messages (lake queue): one published file, for the lake; also its metadata JSON.

use super::job::{JobKind, Window};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Checksum of a published file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checksum {
    /// `CRC32C` or `CRC64NVME`, as S3 names them.
    pub algorithm: String,
    /// S3's full-object or composite value, base64.
    pub value: String,
}

/// One published file, for the lake (lake queue; deduplication id `jobId:batchId:segment`); also its metadata
/// JSON, which a consumer of another release may read back. Unknown fields are ignored, and a field added later
/// has a default (docs/messages.md, "Compatibility").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletionMessage {
    /// Contract version.
    pub version: u32,
    /// Zuora's job id.
    pub job_id: String,
    /// Zuora's batch id.
    pub batch_id: String,
    /// Zuora's file id.
    pub file_id: String,
    /// The object.
    pub object: String,
    /// 0-based index of this file in the batch (segmented full loads have several).
    pub segment: u32,
    /// Files in the batch.
    pub segments: u32,
    /// Where the CSV is.
    pub bucket: String,
    /// The CSV's key.
    pub key: String,
    /// The metadata JSON's key (same bucket).
    pub metadata_key: String,
    /// Records in the file, header excluded; checked against Zuora's count.
    pub record_count: u64,
    /// Bytes of the stored object.
    pub bytes: u64,
    /// True for a full load.
    pub full: bool,
    /// The window the file covers.
    pub window: Window,
    /// When Zuora produced the data: the lake orders increments by this, not by arrival.
    pub executed_at: DateTime<Utc>,
    /// Checksum of the stored object.
    pub checksum: Checksum,
    /// `none`, `gzip` or `zstd`.
    pub compression: String,
    /// The export the file came from: `increment` (the daily session), `backfill` or `fullWindow` (one window of a
    /// full export). With `full`, an `increment` is the object's whole live table as of `executedAt`: the lake
    /// replaces the object's table with it rather than merging it (docs/messages.md). Absent from messages of
    /// earlier releases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<JobKind>,
    /// What the file's columns are, for readers that type them (a table writer, an engine's DDL). Absent from
    /// messages of earlier releases and from files of deletions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<FileSchema>,
}

/// A published file's columns, its key and its deleted flag: enough to read it into a typed table without knowing
/// Zuora (docs/messages.md, "The file's schema").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileSchema {
    /// The header's columns, in order.
    pub columns: Vec<FileColumn>,
    /// The column that identifies a row (`Account.Id`): the merge key.
    pub id_column: String,
    /// The deleted flag, for objects that export deleted rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<DeletedColumn>,
    /// The zone of datetimes written without an offset (Zuora renders a datetime at midnight of its system time as
    /// a bare date); every other datetime carries its UTC offset (`2026-08-04T20:11:15-0700`).
    pub time_zone: String,
}

impl FileSchema {
    /// The schema of a file of deletions (docs/messages.md, "Files of deletions"): the deleted flag, `true` on
    /// every row, then the Id.
    pub fn of_deletions(id_column: String, deleted_column: String, time_zone: &str) -> Self {
        let column = |name: &String, zuora_type: &str| FileColumn {
            name: name.clone(),
            zuora_type: zuora_type.to_owned(),
            nullable: false,
        };
        Self {
            columns: vec![column(&deleted_column, "boolean"), column(&id_column, "text")],
            id_column,
            deleted: Some(DeletedColumn { column: deleted_column, format: crate::zuora::DeletedFormat::Boolean }),
            time_zone: time_zone.to_owned(),
        }
    }
}

/// One column of a published file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileColumn {
    /// As in the header (`Account.Balance`).
    pub name: String,
    /// Zuora's type, from Describe, lower case: `boolean`, `date`, `datetime`, `decimal`, `integer`, `picklist`,
    /// `text`, `timestamp` or `zoql`; `text` when Zuora does not describe the field.
    #[serde(rename = "type")]
    pub zuora_type: String,
    /// Whether a value can be empty (Zuora writes null as an empty field).
    pub nullable: bool,
}

/// The deleted flag of a file: the column, and how it marks a deleted row (`Boolean`: `true`; `Numeric`: `1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedColumn {
    /// As in the header (`Account.IsDeleted`).
    pub column: String,
    /// `Boolean` or `Numeric`, as the query's deleted spec asked.
    pub format: crate::zuora::DeletedFormat,
}

/// Where a file's metadata JSON is written, beside it (part of the lake's contract):
/// `Account/2026-11-24/job/batch-0.csv` (or a compressed `.csv.gz`, `.csv.zst`) ->
/// `Account/2026-11-24/job/batch-0.metadata.json`.
pub fn metadata_key(key: &str) -> String {
    let plain = [".gz", ".zst"].iter().find_map(|ext| key.strip_suffix(ext)).unwrap_or(key);
    format!("{}.metadata.json", plain.strip_suffix(".csv").unwrap_or(plain))
}

impl CompletionMessage {
    /// Whether the file is part of the object's whole live table, which replaces what the lake holds of it: a
    /// session's full load (a first load, or Zuora starting the session again), not a window of a full export.
    pub fn replaces_the_table(&self) -> bool {
        self.full && self.kind == Some(JobKind::Increment)
    }

    /// The lake queue's deduplication id: one message per file, whatever the number of deliveries.
    pub fn deduplication_id(&self) -> String {
        format!("{}:{}:{}", self.job_id, self.batch_id, self.segment)
    }

    /// This message as the lake queue takes it, whoever publishes the file: deduplicated by
    /// [`CompletionMessage::deduplication_id`], in one message group per object (a completion the lake cannot take
    /// holds back its object's later files, not others').
    pub fn lake_message(&self) -> crate::queue::OutgoingMessage {
        #[allow(clippy::expect_used)]
        let body = serde_json::to_string(self).expect("a completion message serialises");
        crate::queue::OutgoingMessage::new(body).deduplicated(self.deduplication_id()).grouped(&self.object)
    }

    /// The metadata JSON written next to the file: this message plus the old Lambda's `status` and `name` and
    /// the export time.
    pub fn metadata_json(&self, exported_at: DateTime<Utc>) -> Vec<u8> {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("status".into(), "completed".into());
            map.insert("name".into(), self.object.clone().into());
            map.insert("exportedAt".into(), exported_at.to_rfc3339().into());
        }
        serde_json::to_vec_pretty(&value).unwrap_or_default()
    }

    /// The old export's metadata of this file, for its fixed keys' readers: its six fields, in its order,
    /// pretty-printed with two spaces (docs/old-export.md).
    pub fn old_metadata_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct OldMetadata<'a> {
            job_id: &'a str,
            file_id: &'a str,
            batch_id: &'a str,
            status: &'a str,
            name: &'a str,
            record_count: u64,
        }
        let old = OldMetadata {
            job_id: &self.job_id,
            file_id: &self.file_id,
            batch_id: &self.batch_id,
            status: "completed",
            name: &self.object,
            record_count: self.record_count,
        };
        serde_json::to_vec_pretty(&old).unwrap_or_default()
    }

    /// The message a metadata JSON was written from.
    pub fn from_metadata_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
        if let Some(map) = value.as_object_mut() {
            for extra in ["status", "name", "exportedAt"] {
                map.remove(extra);
            }
        }
        serde_json::from_value(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::JobMessage;

    /// The completion message of docs/messages.md, as this release and the first one write it.
    const COMPLETION: &str = r#"{"version": 1,
        "jobId": "2c92c0f966cd4f580166ec0ac89d5bb7", "batchId": "2c92c0f966cd4f580166ec0ac8a75bb8",
        "fileId": "2c92c0f966cd4f580166ec0ac8b05bb9", "object": "Account", "segment": 0, "segments": 1,
        "bucket": "zuora-raw", "key": "Account/2026-11-24/j/b-0.csv", "metadataKey": "Account/2026-11-24/j/b-0.metadata.json",
        "recordCount": 1234, "bytes": 456789, "full": false,
        "window": {"from": "2026-11-23T06:00:09Z", "to": "2026-11-24T06:00:12Z"},
        "executedAt": "2026-11-24T06:00:15Z", "checksum": {"algorithm": "CRC32C", "value": "yZRlqg=="},
        "compression": "none"}"#;

    /// A JSON object with one more field, as a later release may write it.
    fn with_added_field(json: &str) -> String {
        let mut value: serde_json::Value = serde_json::from_str(json).unwrap();
        value["columnsOfALaterRelease"] = serde_json::json!([{"name": "Id", "type": "text"}]);
        value["window"]["zoneOfALaterRelease"] = serde_json::json!("UTC");
        value.to_string()
    }

    #[test]
    fn messages_and_metadata_of_another_release_are_read_during_a_rolling_deploy() {
        // A later release's completion message and metadata, with fields this one does not know.
        let today: CompletionMessage = serde_json::from_str(COMPLETION).unwrap();
        let later: CompletionMessage = serde_json::from_str(&with_added_field(COMPLETION)).unwrap();
        assert_eq!(later, today);
        let metadata = with_added_field(&String::from_utf8(today.metadata_json(Utc::now())).unwrap());
        assert_eq!(CompletionMessage::from_metadata_json(metadata.as_bytes()).unwrap(), today);
        // A later release's job message; and an earlier release's, without the fields added since (`starts`).
        let earlier_job = r#"{"version": 1, "jobId": "2c92c0f966cd4f580166ec0ac89d5bb7", "requestId": "m-1",
            "kind": "increment", "objects": ["Account"], "window": {"from": "2026-11-23T06:00:09Z",
            "to": "2026-11-24T06:00:12Z"}, "submittedAt": "2026-11-24T06:00:13Z"}"#;
        let job: JobMessage = serde_json::from_str(earlier_job).unwrap();
        assert!(job.starts.is_empty());
        assert_eq!(serde_json::from_str::<JobMessage>(&with_added_field(earlier_job)).unwrap(), job);
    }
}
