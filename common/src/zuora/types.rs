//! AQuA wire types. Requests are written the way every documented example writes them; responses are read
//! tolerantly, because Zuora's own examples disagree on types (`version` and `recordCount` as string or number,
//! `startTime` with or without an offset, `incrementalTime` as text or epoch milliseconds, `fileId` or `segments`).

use super::DataCenter;
use super::time::local_to_utc;
use crate::secret::Secret;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The body of `POST /v1/batch-query/`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BatchQueryRequest {
    /// `csv`, or `gzip` for files several times smaller on the wire (the consumer decompresses them to count).
    pub format: String,
    /// `1.1`: the version that supports stateful mode.
    pub version: String,
    /// Job name, at most 32 characters.
    pub name: String,
    /// `none`.
    pub encrypted: String,
    /// `true` gives `Object.Field` headers (the flag works opposite to its name).
    pub use_query_labels: bool,
    /// `true`: datetimes as `yyyy-MM-ddTHH:mm:ss+hhmm`.
    pub date_time_utc: bool,
    /// Stateful session: partner, issued by Zuora.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
    /// Stateful session: project.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Lower bound of the window, in the data centre's zone (see [`super::render_incremental_time`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incremental_time: Option<String>,
    /// Called by Zuora when the job completes, `${JOBID}` and `${STATUS}` filled in. Its path holds the route's
    /// secret: sent to Zuora, never printed (`Debug` shows `***`).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "crate::secret::serialize_exposed")]
    pub notify_url: Option<Secret>,
    /// The queries, at most 50.
    pub queries: Vec<Query>,
}

/// Zuora refuses job names longer than this.
pub const MAX_JOB_NAME: usize = 32;

impl BatchQueryRequest {
    /// A stateful (`1.1`, partner + project) CSV request with `Object.Field` headers and UTC datetimes.
    pub fn stateful(name: &str, partner: &str, project: &str, queries: Vec<Query>) -> Self {
        Self {
            format: "csv".to_owned(),
            version: "1.1".to_owned(),
            name: name.chars().take(MAX_JOB_NAME).collect(),
            encrypted: "none".to_owned(),
            use_query_labels: true,
            date_time_utc: true,
            partner: Some(partner.to_owned()),
            project: Some(project.to_owned()),
            incremental_time: None,
            notify_url: None,
            queries,
        }
    }

    /// Sent as `version` (`1.1` and `1.2` are both stateful).
    pub fn with_version(mut self, version: &str) -> Self {
        self.version = version.to_owned();
        self
    }

    /// Has Zuora call `url` when the job completes (none: no call).
    pub fn with_notify_url(mut self, url: Option<&Secret>) -> Self {
        self.notify_url = url.cloned();
        self
    }

    /// Asks for files in `format` (`csv` or `gzip`).
    pub fn with_format(mut self, format: &str) -> Self {
        self.format = format.to_owned();
        self
    }

    /// Sets the window's lower bound, rendered for the tenant's data centre.
    pub fn with_incremental_time(mut self, from: DateTime<Utc>, data_center: DataCenter) -> Self {
        self.incremental_time = Some(super::render_incremental_time(from, data_center));
        self
    }
}

/// One query of a job.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Query {
    /// Names the batch in the response; we use the object name.
    pub name: String,
    /// The ZOQL text.
    pub query: String,
    /// `zoqlexport`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Ask for deleted rows, flagged in a first column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<DeletedSpec>,
}

impl Query {
    /// An Export ZOQL query.
    pub fn export(name: &str, zoql: &str, deleted: Option<DeletedSpec>) -> Self {
        Self { name: name.to_owned(), query: zoql.to_owned(), kind: "zoqlexport".to_owned(), deleted }
    }
}

/// How deleted rows are flagged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeletedSpec {
    /// Column name; Zuora writes it first, as `<Object>.<column>`.
    pub column: String,
    /// `Boolean` (`true`/`false`) or `Numeric` (`1`/`0`).
    pub format: DeletedFormat,
    /// Stateless jobs refuse `deleted` (error 90012) unless this is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_export: Option<bool>,
}

/// The flag's rendering.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum DeletedFormat {
    /// `true` / `false`.
    #[default]
    Boolean,
    /// `1` / `0`.
    Numeric,
}

/// A job as returned by submit, get, last-completed and cancel.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// 32 hex characters.
    pub id: String,
    /// The name given at submit.
    #[serde(default)]
    pub name: Option<String>,
    /// Job status.
    pub status: JobStatus,
    /// `1.1`, sometimes sent as a number.
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub version: Option<String>,
    /// The files' format as submitted, echoed upper-case: `CSV`, `GZIP`, `ZIP`.
    #[serde(default)]
    pub format: Option<String>,
    /// Stateful session partner.
    #[serde(default)]
    pub partner: Option<String>,
    /// Stateful session project (one example echoes it lowercased).
    #[serde(default)]
    pub project: Option<String>,
    /// When the job started.
    #[serde(default)]
    pub start_time: Option<ZuoraTime>,
    /// The lower bound the job was submitted with.
    #[serde(default)]
    pub incremental_time: Option<ZuoraTime>,
    /// One batch per query.
    #[serde(default)]
    pub batches: Vec<Batch>,
}

impl Job {
    /// True when the job's files are gzip files (the body is the `.gz` file, not an HTTP content encoding).
    pub fn is_gzip(&self) -> bool {
        self.format.as_deref().is_some_and(|f| f.eq_ignore_ascii_case("gzip"))
    }
}

/// One query's result within a job.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    /// 32 hex characters; absent on a refused submit.
    #[serde(default)]
    pub batch_id: Option<String>,
    /// The query's name.
    #[serde(default)]
    pub name: Option<String>,
    /// The ZOQL text.
    #[serde(default)]
    pub query: Option<String>,
    /// Batch status.
    pub status: BatchStatus,
    /// Records in the file(s), header excluded.
    #[serde(default, deserialize_with = "opt_u64_from_string_or_number")]
    pub record_count: Option<u64>,
    /// The result file, when not segmented.
    #[serde(default)]
    pub file_id: Option<String>,
    /// The result files of a segmented full load, each with its own header row.
    #[serde(default)]
    pub segments: Vec<String>,
    /// True for a full load, false for an increment; sometimes missing.
    #[serde(default, deserialize_with = "opt_bool_from_bool_or_string")]
    pub full: Option<bool>,
    /// Detail of a failure, e.g. `java.lang.RuntimeException: You must specify a select.`.
    #[serde(default)]
    pub message: Option<String>,
}

impl Batch {
    /// The files holding this batch's records, in order: the segments if any, else the single file.
    pub fn file_ids(&self) -> Vec<&str> {
        if self.segments.is_empty() {
            self.file_id.iter().map(String::as_str).collect()
        } else {
            self.segments.iter().map(String::as_str).collect()
        }
    }
}

/// Where a status leaves the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Still going (or not known to have stopped).
    Running,
    /// Finished with results.
    Succeeded,
    /// Finished without results.
    Failed,
}

/// Job status. The set is open-ended: unknown values are kept, and count as running until a deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    /// Accepted, not started.
    Submitted,
    /// Waiting.
    Pending,
    /// Running.
    Executing,
    /// Done; files are ready.
    Completed,
    /// Failed validation.
    Error,
    /// A query failed.
    Aborted,
    /// Cancelled by a `DELETE`.
    Cancelled,
    /// Undocumented, seen by tap-zuora.
    Failed,
    /// Anything else, as sent.
    Unknown(String),
}

impl JobStatus {
    /// Where this status leaves the job.
    pub fn phase(&self) -> Phase {
        match self {
            Self::Completed => Phase::Succeeded,
            Self::Error | Self::Aborted | Self::Cancelled | Self::Failed => Phase::Failed,
            Self::Submitted | Self::Pending | Self::Executing | Self::Unknown(_) => Phase::Running,
        }
    }

    /// True for a value this client has never heard of.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Self::Unknown(_))
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Submitted => "submitted",
            Self::Pending => "pending",
            Self::Executing => "executing",
            Self::Completed => "completed",
            Self::Error => "error",
            Self::Aborted => "aborted",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Unknown(other) => other,
        })
    }
}

impl<'de> Deserialize<'de> for JobStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(match text.to_ascii_lowercase().as_str() {
            "submitted" => Self::Submitted,
            "pending" => Self::Pending,
            "executing" => Self::Executing,
            "completed" => Self::Completed,
            "error" => Self::Error,
            "aborted" => Self::Aborted,
            "cancelled" | "canceled" => Self::Cancelled,
            "failed" => Self::Failed,
            _ => Self::Unknown(text),
        })
    }
}

/// Batch status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchStatus {
    /// Accepted.
    Submitted,
    /// Waiting.
    Pending,
    /// Running.
    Executing,
    /// Done; file(s) ready.
    Completed,
    /// The query failed; `message` says why.
    Aborted,
    /// The object cannot export deleted records.
    DeletedNotAllowed,
    /// Not documented for batches, checked defensively.
    Cancelled,
    /// Not documented for batches, checked defensively.
    Error,
    /// Anything else, as sent.
    Unknown(String),
}

impl BatchStatus {
    /// Where this status leaves the batch.
    pub fn phase(&self) -> Phase {
        match self {
            Self::Completed => Phase::Succeeded,
            Self::Aborted | Self::DeletedNotAllowed | Self::Cancelled | Self::Error => Phase::Failed,
            Self::Submitted | Self::Pending | Self::Executing | Self::Unknown(_) => Phase::Running,
        }
    }
}

impl fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Submitted => "submitted",
            Self::Pending => "pending",
            Self::Executing => "executing",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
            Self::DeletedNotAllowed => "deleted_notallowed",
            Self::Cancelled => "cancelled",
            Self::Error => "error",
            Self::Unknown(other) => other,
        })
    }
}

impl<'de> Deserialize<'de> for BatchStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(match text.to_ascii_lowercase().as_str() {
            "submitted" => Self::Submitted,
            "pending" => Self::Pending,
            "executing" => Self::Executing,
            "completed" => Self::Completed,
            "aborted" => Self::Aborted,
            "deleted_notallowed" => Self::DeletedNotAllowed,
            "cancelled" | "canceled" => Self::Cancelled,
            "error" => Self::Error,
            _ => Self::Unknown(text),
        })
    }
}

/// A timestamp as Zuora sends it: epoch milliseconds, text with an offset (`2021-01-18T17:13:48+0000`), or a bare
/// wall-clock text (`2014-09-03 08:20:07`) in the data centre's zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZuoraTime {
    /// An exact instant.
    Instant(DateTime<Utc>),
    /// A wall-clock time whose zone is the tenant's.
    WallClock(NaiveDateTime),
}

impl ZuoraTime {
    /// The instant, reading a wall-clock time in the data centre's zone.
    pub fn to_utc(&self, data_center: DataCenter) -> Option<DateTime<Utc>> {
        match self {
            Self::Instant(at) => Some(*at),
            Self::WallClock(naive) => local_to_utc(*naive, data_center),
        }
    }

    /// Reads one of the forms above; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        for format in ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%z"] {
            if let Ok(at) = DateTime::parse_from_str(text, format) {
                return Some(Self::Instant(at.with_timezone(&Utc)));
            }
        }
        if let Ok(at) = DateTime::parse_from_rfc3339(text) {
            return Some(Self::Instant(at.with_timezone(&Utc)));
        }
        for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
            if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
                return Some(Self::WallClock(naive));
            }
        }
        None
    }
}

impl<'de> Deserialize<'de> for ZuoraTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Number(n) => n
                .as_i64()
                .and_then(DateTime::from_timestamp_millis)
                .map(Self::Instant)
                .ok_or_else(|| de::Error::custom(format!("bad epoch milliseconds {n}"))),
            serde_json::Value::String(s) => {
                if let Ok(millis) = s.parse::<i64>() {
                    return DateTime::from_timestamp_millis(millis)
                        .map(Self::Instant)
                        .ok_or_else(|| de::Error::custom(format!("bad epoch milliseconds {s}")));
                }
                Self::parse(&s).ok_or_else(|| de::Error::custom(format!("unrecognised timestamp {s:?}")))
            }
            other => Err(de::Error::custom(format!("expected a timestamp, got {other}"))),
        }
    }
}

fn opt_string_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(deserializer)? {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => {
            // `1.1` and `1` both arrive as numbers; keep one decimal so they compare as the strings do.
            Some(if n.is_f64() { n.to_string() } else { format!("{n}.0") })
        }
        Some(other) => return Err(de::Error::custom(format!("expected a string or number, got {other}"))),
    })
}

fn opt_u64_from_string_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().map(Some).ok_or_else(|| de::Error::custom(format!("not a count: {n}")))
        }
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => {
            s.trim().parse().map(Some).map_err(|_| de::Error::custom(format!("not a count: {s:?}")))
        }
        Some(other) => Err(de::Error::custom(format!("expected a count, got {other}"))),
    }
}

fn opt_bool_from_bool_or_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Bool(b)) => Ok(Some(b)),
        Some(serde_json::Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(de::Error::custom(format!("expected true or false, got {s:?}"))),
        },
        Some(other) => Err(de::Error::custom(format!("expected a boolean, got {other}"))),
    }
}

/// True for a Zuora job, batch or file id: 32 hexadecimal digits. Ids from messages go into URL paths only once
/// checked.
pub fn is_zuora_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_reference_submit_response() {
        let json = r#"{"id":"2c92c0f966cd4f580166ec0ac89d5bb7","name":"Example","status":"submitted",
            "version":"1.1","format":"CSV","encrypted":"none","partner":"salesforce",
            "project":"00170000011K3Ub","useLastCompletedJobQueries":false,"offset":0,
            "incrementalTime":1421865001000,"notifyUrl":"...",
            "batches":[{"batchId":"2c92c0f966cd4f580166ec0ac8a75bb8","name":"AccountingPeriod",
              "query":"select ...","batchType":"zoqlexport","apiVersion":"91.0","status":"pending",
              "localizedStatus":"pending","recordCount":0,"full":true,
              "deleted":{"column":"Deleted","format":"Boolean"}}]}"#;
        let job: Job = serde_json::from_str(json).unwrap();
        assert_eq!(job.status, JobStatus::Submitted);
        assert_eq!(job.version.as_deref(), Some("1.1"));
        let at = job.incremental_time.unwrap().to_utc(DataCenter::Us).unwrap();
        assert_eq!(at.to_rfc3339(), "2015-01-21T18:30:01+00:00");
        assert_eq!(job.batches[0].record_count, Some(0));
        assert_eq!(job.batches[0].full, Some(true));
        assert!(job.batches[0].file_ids().is_empty());
    }

    #[test]
    fn tolerates_older_and_newer_shapes() {
        let json = r#"{"id":"a","status":"completed","version":1.1,"startTime":"2014-09-03 08:20:07",
            "incrementalTime":"2019-03-13 00:00:00",
            "batches":[{"status":"completed","recordCount":"42","segments":["s1","s2"],"full":"false"},
                       {"status":"completed","recordCount":7,"fileId":"f3"}]}"#;
        let job: Job = serde_json::from_str(json).unwrap();
        assert_eq!(job.version.as_deref(), Some("1.1"));
        assert_eq!(job.start_time.unwrap().to_utc(DataCenter::Us).unwrap().to_rfc3339(), "2014-09-03T15:20:07+00:00");
        assert_eq!(
            job.incremental_time.unwrap().to_utc(DataCenter::Eu).unwrap().to_rfc3339(),
            "2019-03-13T00:00:00+00:00"
        );
        assert_eq!(job.batches[0].record_count, Some(42));
        assert_eq!(job.batches[0].file_ids(), vec!["s1", "s2"]);
        assert_eq!(job.batches[0].full, Some(false));
        assert_eq!(job.batches[1].file_ids(), vec!["f3"]);
        assert_eq!(job.batches[1].full, None);

        let modern: Job = serde_json::from_str(
            r#"{"id":"b","status":"executing","version":1,"startTime":"2021-01-18T17:13:48+0000"}"#,
        )
        .unwrap();
        assert_eq!(modern.version.as_deref(), Some("1.0"));
        assert_eq!(modern.start_time, Some(ZuoraTime::Instant("2021-01-18T17:13:48Z".parse().unwrap())));
    }

    #[test]
    fn every_status_has_a_phase_and_unknown_ones_run() {
        let parse = |s: &str| serde_json::from_value::<JobStatus>(serde_json::json!(s)).unwrap();
        assert_eq!(parse("completed").phase(), Phase::Succeeded);
        for failed in ["error", "aborted", "cancelled", "failed", "FAILED"] {
            assert_eq!(parse(failed).phase(), Phase::Failed, "{failed}");
        }
        for running in ["submitted", "pending", "executing"] {
            assert_eq!(parse(running).phase(), Phase::Running, "{running}");
        }
        let odd = parse("paused");
        assert!(odd.is_unknown());
        assert_eq!(odd.phase(), Phase::Running);
        assert_eq!(odd.to_string(), "paused");
        let batch = |s: &str| serde_json::from_value::<BatchStatus>(serde_json::json!(s)).unwrap();
        assert_eq!(batch("deleted_notallowed").phase(), Phase::Failed);
    }

    #[test]
    fn request_serialises_like_the_documented_examples() {
        let request = BatchQueryRequest::stateful(
            "a job name that is far longer than thirty-two characters",
            "partner",
            "project",
            vec![Query::export(
                "Account",
                "SELECT Id FROM Account",
                Some(DeletedSpec { column: "IsDeleted".into(), format: DeletedFormat::Boolean, force_export: None }),
            )],
        )
        .with_incremental_time("2022-10-01T00:00:00Z".parse().unwrap(), DataCenter::Us);
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(json["name"].as_str().unwrap().len(), MAX_JOB_NAME);
        assert_eq!(json["version"], "1.1");
        assert_eq!(json["useQueryLabels"], true);
        assert_eq!(json["incrementalTime"], "2022-09-30 17:00:00");
        assert_eq!(json["queries"][0]["type"], "zoqlexport");
        assert_eq!(json["queries"][0]["deleted"], serde_json::json!({"column": "IsDeleted", "format": "Boolean"}));
    }
}
