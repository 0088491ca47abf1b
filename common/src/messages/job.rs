//! Job messages (jobs queue): a submitted AQuA job for the consumers, or Zuora's word that one finished; and how
//! a job's window is asked for again.

use super::MESSAGE_VERSION;
use super::request::{ExactWindow, ExportFrom, ExportRequest};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

/// The message attribute the stack's notification route sets, to a constant, on everything it puts on the jobs
/// queue ([`NOTIFY_ORIGIN`]). The route cannot validate or escape what Zuora's caller sends, so a message carrying it
/// is read as a notification and nothing else, however its body looks: whoever learns the route's path can put a
/// body on the queue, never a job message (docs/decisions/notify-edge.md).
pub const ORIGIN_ATTRIBUTE: &str = "origin";

/// The value of [`ORIGIN_ATTRIBUTE`] on the notification route's messages.
pub const NOTIFY_ORIGIN: &str = "notify";

/// Zuora's word that a job finished (jobs queue): the body the stack's notification route puts there when Zuora
/// calls the job's `notifyUrl`, which is the job id (`${JOBID}`) and nothing else. It is a pointer, never an
/// instruction: the consumer reads the job's record in the ledger and works from that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFinished {
    /// Zuora's job id (32 hexadecimal digits).
    pub job_id: String,
}

impl JobFinished {
    /// Reads a notification's body: a Zuora job id (32 hexadecimal digits) and nothing else, or why not. The reason
    /// quotes at most the body's first 40 characters: the body is whatever the route's caller sent.
    pub fn read(body: &str) -> Result<Self, String> {
        if crate::zuora::is_zuora_id(body) {
            return Ok(Self { job_id: body.to_owned() });
        }
        let shown: String = body.chars().take(40).collect();
        let more = if body.chars().count() > 40 { "..." } else { "" };
        Err(format!("a notification is a Zuora job id (32 hexadecimal digits), got {shown:?}{more}"))
    }
}

/// A message of the jobs queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobsQueueMessage {
    /// A job to publish once Zuora has run it (the producer's); acted on only as the ledger records it.
    Job(JobMessage),
    /// Zuora said a job finished (a notification).
    Finished(JobFinished),
}

/// Why a jobs-queue message cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnreadableJobsMessage {
    /// A message of the notification route that is not a job id: dropped and counted, never dead-lettered (anyone
    /// who knows the route's path can send one).
    Notification(String),
    /// A message from inside the stack that is not a job message: dead-lettered with the reason.
    Job(String),
}

impl JobsQueueMessage {
    /// Reads a jobs-queue message: one with the notification route's [`ORIGIN_ATTRIBUTE`] is a notification or
    /// nothing; any other is a job message or nothing.
    pub fn read(body: &str, origin: Option<&str>) -> Result<Self, UnreadableJobsMessage> {
        if origin == Some(NOTIFY_ORIGIN) {
            return JobFinished::read(body).map(Self::Finished).map_err(UnreadableJobsMessage::Notification);
        }
        serde_json::from_str(body).map(Self::Job).map_err(|e| UnreadableJobsMessage::Job(e.to_string()))
    }
}

impl JobMessage {
    /// The fields in which this message differs from `recorded` (the ledger's job message of the same job): a
    /// message is at most a pointer with a copy, and a copy that disagrees is a forgery or a bug.
    pub fn differences_from(&self, recorded: &JobMessage) -> Vec<&'static str> {
        let fields = [
            ("version", self.version == recorded.version),
            ("jobId", self.job_id.eq_ignore_ascii_case(&recorded.job_id)),
            ("requestId", self.request_id == recorded.request_id),
            ("kind", self.kind == recorded.kind),
            ("objects", self.objects == recorded.objects),
            ("window", self.window == recorded.window),
            ("starts", self.starts == recorded.starts),
            ("submittedAt", self.submitted_at == recorded.submitted_at),
            ("until", self.until == recorded.until),
        ];
        fields.into_iter().filter(|(_, same)| !same).map(|(name, _)| name).collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["Account", "Invoice"];

    /// The request as the producer reads it back off the requests queue.
    fn read_back(request: &ExportRequest) -> ExportRequest {
        let now = "2026-11-24T10:00:00Z".parse().unwrap();
        ExportRequest::parse(&serde_json::to_string(request).unwrap(), KNOWN, now).unwrap()
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
        assert_eq!(read_back(&again), again);
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
        assert_eq!(read_back(&increment), increment);
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
            assert_eq!(&read_back(request), request);
        }
    }

    #[test]
    fn a_job_message_round_trips_through_json() {
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
        assert_eq!(JobsQueueMessage::read(&json, None), Ok(JobsQueueMessage::Job(job.clone())));
        assert!(job.differences_from(&job).is_empty());
        let forged = JobMessage {
            kind: JobKind::Increment,
            starts: [("Account".to_owned(), job.window.to)].into(),
            ..job.clone()
        };
        assert_eq!(forged.differences_from(&job), ["kind", "starts"]);
    }

    #[test]
    fn whatever_the_notification_route_puts_on_the_queue_is_a_job_id_or_nothing() {
        let id = "2C92C0F966CD4F580166EC0AC89D5BB7";
        let finished = JobsQueueMessage::read(id, Some(NOTIFY_ORIGIN)).unwrap();
        assert_eq!(finished, JobsQueueMessage::Finished(JobFinished { job_id: id.to_owned() }));
        // A whole job message sent through the route stays a notification that cannot be read: never a job.
        let job = r#"{"version":1,"jobId":"2c92c0f966cd4f580166ec0ac89d5bb7","requestId":"x","kind":"increment","objects":["Account"],"window":{"to":"2022-05-05T00:00:00Z"},"submittedAt":"2022-05-05T00:00:01Z"}"#;
        for body in [job, "", "../../secrets", "2c92c0f966cd4f580166ec0ac89d5bb7 ", &"a".repeat(10_000)] {
            let Err(UnreadableJobsMessage::Notification(reason)) = JobsQueueMessage::read(body, Some(NOTIFY_ORIGIN))
            else {
                panic!("{body:?} read as something");
            };
            assert!(reason.len() < 160, "the reason quotes little of the body: {reason}");
        }
        assert!(matches!(JobsQueueMessage::read(job, None), Ok(JobsQueueMessage::Job(_))));
        assert!(
            matches!(JobsQueueMessage::read(id, None), Err(UnreadableJobsMessage::Job(_))),
            "no origin: a job message"
        );
    }
}
