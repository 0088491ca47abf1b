//! The three message contracts, in one place: export requests (requests queue), job messages (jobs queue) and
//! completion messages (lake queue). Each carries a `version`; a reader refuses versions it does not know rather
//! than guessing. Within a version, job and completion messages (and the metadata JSON) only gain fields, with
//! defaults, and readers ignore fields they do not know: a rolling deploy or a rollback runs two releases side by
//! side. Requests, typed by people, refuse unknown fields (a misspelt field must not change an export silently).
//! docs/messages.md shows an example of each.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The contract version this build writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

/// Longest accepted `requestId` (it becomes part of Zuora's 255-character `Idempotency-Key`).
pub const MAX_REQUEST_ID: usize = 128;

/// Where an export starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFrom {
    /// Continue the stateful session: everything changed since the previous job of the session.
    AfterLastIncrement,
    /// Changes since 00:00:00 UTC of this date; never moves the session.
    Date(NaiveDate),
    /// Changes since this instant (RFC 3339); never moves the session. How a consumer asks again for an
    /// increment's window from exactly where it started: a backfill from an earlier midnight would not report the
    /// deletion of a row created after that midnight (Zuora reports no row created and deleted within one interval).
    Instant(DateTime<Utc>),
    /// Everything (a full export); refused unless the request opts in with `fullExport: true`.
    Beginning,
    /// The rows created in each object's last `lookback_days` (catalogue), exported again statelessly: catches the
    /// changes Zuora made without moving `UpdatedDate`, which no increment reports.
    Lookback,
}

impl fmt::Display for ExportFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AfterLastIncrement => f.write_str("afterLastIncrement"),
            Self::Date(date) => write!(f, "{}", date.format("%Y-%m-%d")),
            Self::Instant(at) => write!(f, "{}", at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            Self::Beginning => f.write_str("beginning"),
            Self::Lookback => f.write_str("lookback"),
        }
    }
}

impl Serialize for ExportFrom {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ExportFrom {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "afterLastIncrement" => Ok(Self::AfterLastIncrement),
            "beginning" => Ok(Self::Beginning),
            "lookback" => Ok(Self::Lookback),
            other => NaiveDate::parse_from_str(other, "%Y-%m-%d")
                .map(Self::Date)
                .or_else(|_| DateTime::parse_from_rfc3339(other).map(|at| Self::Instant(at.with_timezone(&Utc))))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "exportFromDate: expected \"afterLastIncrement\", \"beginning\", \"lookback\", a date \
                         yyyy-mm-dd or an instant (RFC 3339), got {other:?}"
                    ))
                }),
        }
    }
}

/// A request to export (requests queue). The old Lambda's input (`{"exportFromDate": ...}`) is a valid request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportRequest {
    /// Contract version; absent means 1 (the old Lambda's input has none).
    #[serde(default = "current_version", skip_serializing_if = "is_current_version")]
    pub version: u32,
    /// Where the export starts.
    pub export_from_date: ExportFrom,
    /// A subset of the catalogue's objects; all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<Vec<String>>,
    /// Explicit opt-in for `beginning`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full_export: bool,
    /// The sender's id for this request; duplicates of one request id submit one job. Defaults to the queue's
    /// message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// One exact window of a full export (only with `fullExport`): how a consumer asks again for a full-export
    /// window whose files were purged or whose job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<ExactWindow>,
}

/// A half-open window `[from, to)` of creation times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExactWindow {
    /// Inclusive lower bound.
    pub from: DateTime<Utc>,
    /// Exclusive upper bound.
    pub to: DateTime<Utc>,
    /// A full export sized by its data goes on after this window to here: the consumer that publishes the window
    /// asks for the next one, its length from this one's records (`full_export.window_rows`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// How far past the reader's "now" a window may end and still be taken: clocks of two machines (and Zuora's) are
/// never exactly together, but a window ending later than this was not exported yet: it is a hand-made message, a
/// clock far off, or a wrong time zone, and taking it would make it the object's latest data for ever.
pub const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// `Some(reason)` when a window ending at `to` ends in the future as seen at `now` (see [`CLOCK_SKEW`]).
pub fn ends_in_the_future(to: DateTime<Utc>, now: DateTime<Utc>) -> Option<String> {
    (to > now + CLOCK_SKEW).then(|| {
        format!("ends at {to}, in the future (now {now}; {} min of clock skew allowed)", CLOCK_SKEW.num_minutes())
    })
}

/// How many times a window is asked for again (its files purged, its job failed at Zuora) before it is
/// dead-lettered instead: a window that cannot heal must not turn into a stream of jobs.
pub const MAX_REQUESTS_AGAIN: u32 = 3;

/// Prefix of the request id of a window asked for again: `again-<n>-<jobId>-<what>`.
const AGAIN_PREFIX: &str = "again-";

/// How many times the window of the request `request_id` was already asked for again (0 for any other request).
pub fn again_generation(request_id: &str) -> u32 {
    request_id
        .strip_prefix(AGAIN_PREFIX)
        .and_then(|rest| rest.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl JobMessage {
    /// Whether Zuora should answer this job with changes of `object`, not its whole table: an increment of an
    /// object the session had a position for (its own start; for a message without starts, the window's lower
    /// bound). A full load where one was expected means Zuora started the session again (180 days unused, or the
    /// query or its deleted spec changed).
    pub fn expects_changes_of(&self, object: &str) -> bool {
        self.kind == JobKind::Increment
            && (self.starts.contains_key(object) || (self.starts.is_empty() && self.window.from.is_some()))
    }

    /// The requests that ask again for this job's window of `objects` (`what` names the batch or the job in their
    /// ids, so one failure asks once however often it is seen), or `None` when the window was asked for again
    /// [`MAX_REQUESTS_AGAIN`] times already. For a full-export window, its first half when Zuora failed the job
    /// (`what` starting `job`: a query killed at its time limit would be killed again whole), the export going on
    /// from there, and the same window exactly when its files were purged; a full export for a
    /// full load (`full`: Zuora's flag on the batch); for an increment or a backfill, changes since each object's own
    /// start ([`JobMessage::starts`], else the window's), one request per distinct start: an earlier start would
    /// miss deletions (Zuora cannot report a row created and deleted within one interval, and a backfill from
    /// earlier would make the row's creation part of its interval); and for an increment whose start is unknown (a
    /// job adopted from another system, the old export at a cutover), changes since the date it ran: never a full
    /// export.
    pub fn request_again(&self, objects: &[String], what: &str, full: bool) -> Option<Vec<ExportRequest>> {
        let generation = again_generation(&self.request_id) + 1;
        if generation > MAX_REQUESTS_AGAIN {
            return None;
        }
        let request = |objects: Vec<String>, what: String, from: ExportFrom, window: Option<ExactWindow>| {
            let full_export = from == ExportFrom::Beginning;
            ExportRequest {
                version: MESSAGE_VERSION,
                export_from_date: from,
                objects: Some(objects),
                full_export,
                request_id: Some(format!("{AGAIN_PREFIX}{generation}-{}-{what}", self.job_id)),
                window,
            }
        };
        let all = || objects.to_vec();
        let requests = match (self.kind, self.window.from) {
            (JobKind::FullWindow, Some(from)) => {
                // A window Zuora failed (a query killed at its time limit) is asked for again in halves: its first
                // half now, the rest as the export goes on. Purged files, the same window.
                let to = self.window.to;
                let half = from + (to - from) / 2;
                let window = if what.starts_with("job") && half - from >= chrono::TimeDelta::hours(1) {
                    ExactWindow { from, to: half, until: Some(self.until.map_or(to, |until| until.max(to))) }
                } else {
                    ExactWindow { from, to, until: self.until }
                };
                vec![request(all(), what.to_owned(), ExportFrom::Beginning, Some(window))]
            }
            // A full load's rows are not changes since any date.
            (_, None) | (JobKind::Increment, Some(_)) if full => {
                vec![request(all(), what.to_owned(), ExportFrom::Beginning, None)]
            }
            (_, Some(from)) => {
                let mut by_start: std::collections::BTreeMap<DateTime<Utc>, Vec<String>> = Default::default();
                for object in objects {
                    by_start.entry(self.starts.get(object).copied().unwrap_or(from)).or_default().push(object.clone());
                }
                let several = by_start.len() > 1;
                by_start
                    .into_iter()
                    .map(|(start, objects)| {
                        let what = if several {
                            format!("{what}-{}", start.format("%Y%m%dT%H%M%SZ"))
                        } else {
                            what.to_owned()
                        };
                        request(objects, what, ExportFrom::Instant(start), None)
                    })
                    .collect()
            }
            (_, None) => vec![request(all(), what.to_owned(), ExportFrom::Date(self.window.to.date_naive()), None)],
        };
        Some(requests)
    }
}

fn current_version() -> u32 {
    MESSAGE_VERSION
}

fn is_current_version(version: &u32) -> bool {
    *version == MESSAGE_VERSION
}

/// Why a request was refused; the text goes with it to the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRequest(pub String);

impl ExportRequest {
    /// Parses and checks a request body against the catalogue's object names and the time now.
    pub fn parse(body: &str, known_objects: &[&str], now: DateTime<Utc>) -> Result<Self, InvalidRequest> {
        let request: Self = serde_json::from_str(body).map_err(|e| {
            let what = if e.is_syntax() || e.is_eof() { "not valid JSON" } else { "not a valid export request" };
            InvalidRequest(format!("{what}: {e}"))
        })?;
        request.check(known_objects, now)?;
        Ok(request)
    }

    /// True when `other` asks for the same export, whatever its `requestId`: a request id names one export, and
    /// a body sent again under it must not change what it asks for.
    pub fn same_export(&self, other: &ExportRequest) -> bool {
        Self { request_id: None, ..self.clone() } == Self { request_id: None, ..other.clone() }
    }

    fn check(&self, known_objects: &[&str], now: DateTime<Utc>) -> Result<(), InvalidRequest> {
        let fail = |text: String| Err(InvalidRequest(text));
        let today = now.date_naive();
        if self.version != MESSAGE_VERSION {
            return fail(format!("version: {} is not supported (this build reads {MESSAGE_VERSION})", self.version));
        }
        match self.export_from_date {
            ExportFrom::Date(date) if date > today => {
                return fail(format!("exportFromDate: {date} is in the future (today is {today} UTC)"));
            }
            ExportFrom::Instant(at) if at > now => {
                return fail(format!("exportFromDate: {at} is in the future (now {now})"));
            }
            ExportFrom::Beginning if !self.full_export => {
                return fail(
                    "exportFromDate: \"beginning\" is a full export of every row; send \"fullExport\": true to confirm"
                        .to_owned(),
                );
            }
            ExportFrom::AfterLastIncrement | ExportFrom::Date(_) | ExportFrom::Instant(_) | ExportFrom::Lookback
                if self.full_export =>
            {
                return fail("fullExport: only goes with exportFromDate \"beginning\"".to_owned());
            }
            _ => {}
        }
        if let Some(objects) = &self.objects {
            if objects.is_empty() {
                return fail("objects: must not be empty (leave it out to export every object)".to_owned());
            }
            let unknown: Vec<&str> = objects
                .iter()
                .map(String::as_str)
                .filter(|o| !known_objects.iter().any(|k| k.eq_ignore_ascii_case(o)))
                .collect();
            if !unknown.is_empty() {
                return fail(format!("objects: unknown {}; known: {}", unknown.join(", "), known_objects.join(", ")));
            }
        }
        if let Some(window) = &self.window {
            if !self.full_export {
                return fail("window: only goes with a full export (\"fullExport\": true)".to_owned());
            }
            if window.from >= window.to {
                return fail(format!("window: from {} is not before to {}", window.from, window.to));
            }
            if let Some(until) = window.until {
                if until < window.to {
                    return fail(format!("window: until {until} is before to {}", window.to));
                }
                if let Some(reason) = ends_in_the_future(until, now) {
                    return fail(format!("window: until {reason}"));
                }
            }
            if let Some(reason) = ends_in_the_future(window.to, now) {
                return fail(format!("window: {reason}"));
            }
        }
        if let Some(id) = &self.request_id
            && (id.is_empty()
                || id.len() > MAX_REQUEST_ID
                || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)))
        {
            return fail(format!(
                "requestId: 1 to {MAX_REQUEST_ID} characters of letters, digits, - _ . or :, got {id:?}"
            ));
        }
        Ok(())
    }
}

/// What kind of export a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobKind {
    /// The daily increment of the stateful session.
    Increment,
    /// Changes since a date (`incrementalTime`); the session did not move.
    Backfill,
    /// One time window of a full export (stateless).
    FullWindow,
}

/// A time window; `from` is absent for a first (full) load, whose lower bound is the beginning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// Inclusive lower bound.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound.
    pub to: DateTime<Utc>,
}

/// A submitted AQuA job for the consumers (jobs queue). Read by consumers of other releases during a rolling
/// deploy: unknown fields are ignored, and a field added later has a default (docs/messages.md, "Compatibility").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobMessage {
    /// Contract version.
    pub version: u32,
    /// Zuora's job id.
    pub job_id: String,
    /// The request that caused it (or `adopted:<jobId>` for a job found by reconciliation).
    pub request_id: String,
    /// What kind of export.
    pub kind: JobKind,
    /// The objects (batch names) of the job, in catalogue order.
    pub objects: Vec<String>,
    /// The window the job covers, as far as the producer knows it; for an increment, `from` is the earliest of its
    /// objects' starts.
    pub window: Window,
    /// An increment's objects' own starts (Zuora keeps a position per query): where each one's window begins.
    /// Absent from other jobs and from messages of earlier builds (then `window.from` is every object's).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub starts: std::collections::BTreeMap<String, DateTime<Utc>>,
    /// When it was submitted.
    pub submitted_at: DateTime<Utc>,
    /// A full-export window's export goes on to here after it ([`ExactWindow::until`]); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// Zuora's word that a job finished (jobs queue): the body the stack's notification route puts there when Zuora
/// calls the job's `notifyUrl`. The consumer reads the job's record in the ledger and publishes it at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobFinished {
    /// Zuora's job id (`${JOBID}`).
    pub job_finished: String,
    /// Its status as Zuora said it (`${STATUS}`, `Completed`).
    #[serde(default)]
    pub status: Option<String>,
}

/// A message of the jobs queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobsQueueMessage {
    /// A job to publish once Zuora has run it (the producer's).
    Job(JobMessage),
    /// Zuora said a job finished (a notification).
    Finished(JobFinished),
}

impl JobsQueueMessage {
    /// Reads a jobs-queue body: a notification has `jobFinished`, a job message `jobId`.
    pub fn parse(body: &str) -> Result<Self, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_str(body)?;
        if value.get("jobFinished").is_some() {
            serde_json::from_value(value).map(Self::Finished)
        } else {
            serde_json::from_value(value).map(Self::Job)
        }
    }
}

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

    const KNOWN: &[&str] = &["Account", "Invoice"];

    fn now() -> DateTime<Utc> {
        "2026-11-24T10:00:00Z".parse().unwrap()
    }

    fn parse(body: &str) -> Result<ExportRequest, InvalidRequest> {
        ExportRequest::parse(body, KNOWN, now())
    }

    #[test]
    fn the_old_lambdas_inputs_are_valid_requests() {
        let daily = parse(r#"{"exportFromDate": "afterLastIncrement"}"#).unwrap();
        assert_eq!(daily.export_from_date, ExportFrom::AfterLastIncrement);
        assert_eq!(daily.objects, None);
        let backfill = parse(r#"{"exportFromDate": "2022-05-04"}"#).unwrap();
        assert_eq!(backfill.export_from_date, ExportFrom::Date(NaiveDate::from_ymd_opt(2022, 5, 4).unwrap()));
        let full =
            parse(r#"{"exportFromDate":"beginning","fullExport":true,"objects":["invoice"],"requestId":"ops-1"}"#);
        assert_eq!(full.unwrap().request_id.as_deref(), Some("ops-1"));
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason_that_names_the_field() {
        let cases = [
            ("not json", "not valid JSON"),
            (r#"{"exportFromDate": "yesterday"}"#, "exportFromDate: expected"),
            (r#"{"exportFromDate": "2022-13-01"}"#, "exportFromDate: expected"),
            (r#"{"exportFromDate": "2026-11-25"}"#, "exportFromDate: 2026-11-25 is in the future"),
            (
                r#"{"exportFromDate": "2026-11-24T10:00:01Z"}"#,
                "exportFromDate: 2026-11-24 10:00:01 UTC is in the future",
            ),
            (r#"{"exportFromDate": "beginning"}"#, "fullExport\": true to confirm"),
            (r#"{"exportFromDate": "2022-05-04", "fullExport": true}"#, "fullExport: only goes with"),
            (r#"{"exportFromDate": "afterLastIncrement", "objects": []}"#, "objects: must not be empty"),
            (r#"{"exportFromDate": "afterLastIncrement", "objects": ["Nope"]}"#, "objects: unknown Nope"),
            (r#"{"exportFromDate": "afterLastIncrement", "colour": "red"}"#, "unknown field `colour`"),
            (r#"{"objects": ["Account"]}"#, "missing field `exportFromDate`"),
            (r#"{"exportFromDate": "afterLastIncrement", "requestId": "a b"}"#, "requestId:"),
            (r#"{"exportFromDate": "afterLastIncrement", "version": 2}"#, "version: 2 is not supported"),
            (
                r#"{"exportFromDate": "2022-05-04", "window": {"from": "2022-01-01T00:00:00Z", "to": "2022-02-01T00:00:00Z"}}"#,
                "window: only goes with a full export",
            ),
            (
                r#"{"exportFromDate": "beginning", "fullExport": true, "window": {"from": "2022-02-01T00:00:00Z", "to": "2022-01-01T00:00:00Z"}}"#,
                "window: from 2022-02-01 00:00:00 UTC is not before",
            ),
            (
                r#"{"exportFromDate": "beginning", "fullExport": true, "window": {"from": "2026-01-01T00:00:00Z", "to": "2026-11-24T10:05:01Z"}}"#,
                "window: ends at 2026-11-24 10:05:01 UTC, in the future",
            ),
        ];
        for (body, expected) in cases {
            let err = parse(body).unwrap_err().0;
            assert!(err.contains(expected), "{body}: {err:?} should contain {expected:?}");
        }
    }

    fn job(kind: JobKind, request_id: &str, from: Option<&str>) -> JobMessage {
        JobMessage {
            version: MESSAGE_VERSION,
            job_id: "2c92c0f966cd4f580166ec0ac89d5bb7".into(),
            request_id: request_id.into(),
            kind,
            objects: vec!["Account".into(), "Invoice".into()],
            window: Window { from: from.map(|f| f.parse().unwrap()), to: "2022-07-01T00:00:00Z".parse().unwrap() },
            starts: Default::default(),
            submitted_at: "2022-07-01T00:00:01Z".parse().unwrap(),
            until: None,
        }
    }

    /// The one request a window is asked for again with.
    fn one(requests: Option<Vec<ExportRequest>>) -> Option<ExportRequest> {
        requests.map(|mut requests| {
            assert_eq!(requests.len(), 1, "{requests:?}");
            requests.remove(0)
        })
    }

    #[test]
    fn a_window_is_asked_for_again_exactly_for_full_exports_and_a_bounded_number_of_times() {
        let invoice = ["Invoice".to_owned()];
        let window = job(JobKind::FullWindow, "r1", Some("2022-01-01T00:00:00Z"));
        let again = one(window.request_again(&invoice, "b1", true)).unwrap();
        assert_eq!(
            serde_json::to_string(&again).unwrap(),
            r#"{"exportFromDate":"beginning","objects":["Invoice"],"fullExport":true,"requestId":"again-1-2c92c0f966cd4f580166ec0ac89d5bb7-b1","window":{"from":"2022-01-01T00:00:00Z","to":"2022-07-01T00:00:00Z"}}"#
        );
        assert!(again.check(KNOWN, now()).is_ok());
        // A window whose job Zuora failed (a query killed at its time limit): its first half, the export going on
        // to the window's end (or its own export's end) from there.
        let failed = one(window.request_again(&invoice, "job", false)).unwrap().window.unwrap();
        let half = ExactWindow {
            from: "2022-01-01T00:00:00Z".parse().unwrap(),
            to: "2022-04-01T12:00:00Z".parse().unwrap(),
            until: Some("2022-07-01T00:00:00Z".parse().unwrap()),
        };
        assert_eq!(failed, half);
        let going_on = JobMessage { until: Some("2026-01-01T00:00:00Z".parse().unwrap()), ..window.clone() };
        let failed = one(going_on.request_again(&invoice, "job", false)).unwrap().window.unwrap();
        assert_eq!(failed.until, going_on.until, "the export's own end");
        let purged = one(going_on.request_again(&invoice, "purged", false)).unwrap().window.unwrap();
        assert_eq!((purged.to, purged.until), (window.window.to, going_on.until), "purged: the same window");
        // An increment: changes since the instant its window started, not since that day's midnight (a row created
        // after midnight and deleted in the window would not be reported).
        let increment =
            one(job(JobKind::Increment, "daily", Some("2022-06-30T05:00:00Z")).request_again(&invoice, "b1", false));
        let increment = increment.unwrap();
        assert_eq!(increment.export_from_date, ExportFrom::Instant("2022-06-30T05:00:00Z".parse().unwrap()));
        assert_eq!(
            serde_json::to_string(&increment).unwrap(),
            r#"{"exportFromDate":"2022-06-30T05:00:00Z","objects":["Invoice"],"requestId":"again-1-2c92c0f966cd4f580166ec0ac89d5bb7-b1"}"#
        );
        assert!(increment.check(KNOWN, now()).is_ok());
        let first_load = one(job(JobKind::Increment, "daily", None).request_again(&invoice, "job", true)).unwrap();
        assert_eq!((first_load.export_from_date, first_load.full_export), (ExportFrom::Beginning, true));
        // A full load whose job message carries a lower bound (an adopted job) is still asked for in full.
        let adopted =
            one(job(JobKind::Increment, "adopted:x", Some("2022-06-30T05:00:00Z")).request_again(&invoice, "b1", true));
        assert_eq!(adopted.map(|r| (r.export_from_date, r.full_export)), Some((ExportFrom::Beginning, true)));
        // An increment adopted with no known start (the old export's last job, taken over with an empty ledger),
        // purged: changes since the day it ran, never a full export from the tenant's beginning.
        let taken_over = one(job(JobKind::Increment, "adopted:x", None).request_again(&invoice, "b1", false)).unwrap();
        let ran = job(JobKind::Increment, "adopted:x", None).window.to.date_naive();
        assert_eq!((taken_over.export_from_date, taken_over.full_export), (ExportFrom::Date(ran), false));

        let id = |n: u32| format!("again-{n}-2c92c0f966cd4f580166ec0ac89d5bb7-b1");
        assert_eq!(again_generation(&id(2)), 2);
        assert_eq!(again_generation("daily"), 0);
        let third = job(JobKind::FullWindow, &id(2), Some("2022-01-01T00:00:00Z")).request_again(&invoice, "b9", true);
        assert_eq!(one(third).unwrap().request_id.unwrap(), "again-3-2c92c0f966cd4f580166ec0ac89d5bb7-b9");
        let fourth = job(JobKind::FullWindow, &id(3), Some("2022-01-01T00:00:00Z")).request_again(&invoice, "b9", true);
        assert_eq!(fourth, None, "a window that cannot heal is asked for again at most {MAX_REQUESTS_AGAIN} times");
    }

    #[test]
    fn an_increments_objects_are_asked_for_again_each_from_its_own_start() {
        let mut daily = job(JobKind::Increment, "daily", Some("2022-06-29T05:00:00Z"));
        // Account was exported alone the day after: its window starts a day later than Invoice's.
        daily.starts = [("Account", "2022-06-30T05:00:00Z"), ("Invoice", "2022-06-29T05:00:00Z")]
            .into_iter()
            .map(|(o, at)| (o.to_owned(), at.parse().unwrap()))
            .collect();
        let requests = daily.request_again(&daily.objects.clone(), "job", false).unwrap();
        let asked: Vec<(String, Vec<String>, String)> = requests
            .iter()
            .map(|r| (r.export_from_date.to_string(), r.objects.clone().unwrap(), r.request_id.clone().unwrap()))
            .collect();
        assert_eq!(
            asked,
            [
                (
                    "2022-06-29T05:00:00Z".to_owned(),
                    vec!["Invoice".to_owned()],
                    "again-1-2c92c0f966cd4f580166ec0ac89d5bb7-job-20220629T050000Z".to_owned()
                ),
                (
                    "2022-06-30T05:00:00Z".to_owned(),
                    vec!["Account".to_owned()],
                    "again-1-2c92c0f966cd4f580166ec0ac89d5bb7-job-20220630T050000Z".to_owned()
                ),
            ]
        );
        for request in &requests {
            assert!(request.check(KNOWN, now()).is_ok());
        }
    }

    #[test]
    fn messages_round_trip_through_json() {
        let job = JobMessage {
            version: MESSAGE_VERSION,
            job_id: "2c92c0f966cd4f580166ec0ac89d5bb7".into(),
            request_id: "m-1".into(),
            kind: JobKind::Backfill,
            objects: vec!["Account".into()],
            window: Window {
                from: Some("2022-05-04T00:00:00Z".parse().unwrap()),
                to: "2022-05-05T00:00:00Z".parse().unwrap(),
            },
            starts: Default::default(),
            submitted_at: "2022-05-05T00:00:01Z".parse().unwrap(),
            until: None,
        };
        let json = serde_json::to_string(&job).unwrap();
        assert!(json.contains("\"kind\":\"backfill\"") && json.contains("\"jobId\""), "{json}");
        assert_eq!(serde_json::from_str::<JobMessage>(&json).unwrap(), job);
        let request = ExportRequest {
            version: MESSAGE_VERSION,
            export_from_date: ExportFrom::Date(NaiveDate::from_ymd_opt(2022, 5, 4).unwrap()),
            objects: None,
            full_export: false,
            request_id: None,
            window: None,
        };
        assert_eq!(serde_json::to_string(&request).unwrap(), r#"{"exportFromDate":"2022-05-04"}"#);
    }

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
        // Requests are typed by people: a field nobody knows is refused, not ignored.
        let refused = ExportRequest::parse(r#"{"exportFromDate": "2022-05-04", "objcts": ["Account"]}"#, KNOWN, now());
        assert!(refused.unwrap_err().0.contains("objcts"));
    }
}
