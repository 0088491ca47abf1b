//! Export requests (requests queue): what people and schedules send, checked strictly.

use super::MESSAGE_VERSION;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

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
            (r#"{"exportFromDate": "2022-05-04", "objcts": ["Account"]}"#, "unknown field `objcts`"),
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

    #[test]
    fn a_request_of_a_date_serialises_as_the_old_lambdas_input() {
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
}
