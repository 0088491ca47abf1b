//! The producer's ledger: a durable record, in object storage, of every request served and every AQuA job
//! submitted, so that no job Zuora ran is ever forgotten.
//!
//! # Records (JSON, under the configured prefix)
//! - `requests/<requestKey>.json`: the request and its planned jobs. Written *before* the first submission
//!   (write-ahead), then after each submission and each enqueue. A redelivered or restarted request resumes from
//!   it; each planned job carries the `Idempotency-Key` it is submitted with, so a submission whose answer was lost
//!   returns the same job instead of a second one.
//! - `jobs/<jobId>.json`: every job known to the producer, submitted or adopted. Reconciliation compares Zuora's
//!   last completed job of the session with these and adopts any job that has none.
//! - `session/last-increment.json`: the upper bound of the session's latest increment and its job (the next
//!   increment's key is named after it), and where each object's own next window starts: Zuora keeps a position
//!   per query, so an increment of a subset of the objects moves only theirs.
//! - `session/claims/<idempotencyKey>.json`: which request is submitting the increment under that key, written
//!   before it submits (a request that died after submitting leaves its claim, and its job, to the next).
//! - `published/<object>/...`: a mark of every file published, written once by the consumer
//!   ([`crate::marks`]); `producer status` reads the latest.
//!
//! Every write is conditional (S3's `If-None-Match: *` to create a record, `If-Match` with the version read to update
//! it), so producers at once (`producer submit` beside `producer serve`, two services during a deploy) never
//! overwrite each other's records: the loser of a race gets a conflict, reads again and decides again (the session
//! mark at once; a request is received again and resumes from its record). The marks are written by every
//! consumer, each file's mark once.

use crate::marks::Marks;
use crate::messages::{ExportRequest, JobKind, Window};
pub use crate::records::LedgerError;
use crate::records::Records;
use crate::store::ObjectStore;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A request and what it turned into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// The request's id, or its first queue message id.
    pub request_key: String,
    /// The request.
    pub request: ExportRequest,
    /// When it was first received.
    pub received_at: DateTime<Utc>,
    /// The jobs it needs, in submission order.
    pub jobs: Vec<PlannedJob>,
}

/// One job of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedJob {
    /// Sent as Zuora's `Idempotency-Key`.
    pub idempotency_key: String,
    /// What kind of export.
    pub kind: JobKind,
    /// Its objects.
    pub objects: Vec<String>,
    /// Lower bound, when known before submission (backfills and full-export windows).
    pub from: Option<DateTime<Utc>>,
    /// Upper bound, when known before submission (full-export windows).
    pub to: Option<DateTime<Utc>>,
    /// Zuora's job id, once submitted.
    pub job_id: Option<String>,
    /// The window as submitted.
    pub window: Option<Window>,
    /// True once the job message is on the jobs queue.
    pub enqueued: bool,
    /// A full-export window's export goes on to here after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// A job known to the producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    /// Zuora's job id.
    pub job_id: String,
    /// The request it served (`adopted:<jobId>` for an adopted job).
    pub request_key: String,
    /// What kind of export.
    pub kind: JobKind,
    /// Its objects.
    pub objects: Vec<String>,
    /// Its window.
    pub window: Window,
    /// An increment's objects' own starts ([`crate::messages::JobMessage::starts`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub starts: BTreeMap<String, DateTime<Utc>>,
    /// When it was submitted (for an adopted job: when Zuora started it).
    pub submitted_at: DateTime<Utc>,
    /// True when reconciliation found it at Zuora without a record.
    pub adopted: bool,
    /// True once its job message is on the jobs queue.
    pub enqueued: bool,
    /// A full-export window's export goes on to here after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

impl JobRecord {
    /// The job message of this job: what the producer enqueues, and what a consumer told by Zuora that the job
    /// finished works from.
    pub fn job_message(&self) -> crate::messages::JobMessage {
        crate::messages::JobMessage {
            version: crate::messages::MESSAGE_VERSION,
            job_id: self.job_id.clone(),
            request_id: self.request_key.clone(),
            kind: self.kind,
            objects: self.objects.clone(),
            window: self.window,
            starts: self.starts.clone(),
            submitted_at: self.submitted_at,
            until: self.until,
        }
    }
}

/// The session's latest recorded increment (its upper bound and its job), and where each object's next window
/// starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionMark {
    /// The increment's upper bound.
    pub to: DateTime<Utc>,
    /// Its job (absent in marks written before it was recorded here).
    #[serde(default)]
    pub job_id: Option<String>,
    /// Each object's own position: the end of the latest increment that included it. Zuora keeps a position per
    /// query, so after `{"objects": ["Account"]}` Account's next window starts later than Invoice's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub objects: BTreeMap<String, DateTime<Utc>>,
    /// Where the objects not in `objects` start: the end of the last increment recorded before positions were
    /// kept per object (absent otherwise: such an object was never in an increment of the session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlisted_from: Option<DateTime<Utc>>,
}

impl SessionMark {
    /// Where the next increment of each of `objects` starts, for those that have a position: objects that were
    /// never in an increment of the session have none (Zuora loads them in full). The increment's window starts at
    /// the earliest of these, so that it holds each object's own.
    pub fn starts_of(&self, objects: &[String]) -> BTreeMap<String, DateTime<Utc>> {
        objects.iter().filter_map(|object| Some((object.clone(), self.start_of(object)?))).collect()
    }

    /// Where the next increment of `object` starts; `None` when it was never in an increment of the session.
    fn start_of(&self, object: &str) -> Option<DateTime<Utc>> {
        match self.objects.get(object) {
            Some(position) => Some(*position),
            // A mark written before positions were kept per object: every object was at its end.
            None if self.objects.is_empty() => Some(self.to),
            None => self.unlisted_from,
        }
    }

    /// This mark moved by the increment `job_id` of `objects` ending at `to`: the session's mark moves forward (to
    /// a later increment, or to one recorded later ending at the same instant), each object's position never back.
    fn advanced(current: Option<&Self>, to: DateTime<Utc>, job_id: &str, objects: &[String]) -> Self {
        let mut next = match current {
            Some(current) => current.clone(),
            None => Self { to, job_id: Some(job_id.to_owned()), objects: BTreeMap::new(), unlisted_from: None },
        };
        if let Some(current) = current
            && current.objects.is_empty()
        {
            next.unlisted_from = current.unlisted_from.or(Some(current.to));
        }
        if current.is_some_and(|c| to > c.to || to == c.to && c.job_id.as_deref() != Some(job_id)) {
            (next.to, next.job_id) = (to, Some(job_id.to_owned()));
        }
        for object in objects {
            let position = next.objects.entry(object.clone()).or_insert(to);
            *position = (*position).max(to);
        }
        next
    }
}

/// Who is submitting the session's next increment under its key: written before the submission, so that a
/// request finding another request's claim knows a job Zuora returns for that key may be the other's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncrementClaim {
    /// The claiming request's key.
    pub request_key: String,
}

/// The ledger name of the claim on the increment submitted under `idempotency_key`.
fn claim_name(idempotency_key: &str) -> String {
    format!("session/claims/{idempotency_key}.json")
}

/// The ledger, on an object store.
#[derive(Clone)]
pub struct Ledger {
    records: Records,
}

/// Tries at moving the session mark when other producers keep moving it at the same time.
const MARK_ATTEMPTS: u32 = 5;

impl Ledger {
    /// A ledger under `prefix` (ending in `/`) of `bucket`.
    pub fn new(store: Arc<dyn ObjectStore>, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self { records: Records::new(store, bucket, prefix) }
    }

    /// A request's record.
    pub async fn request(&self, request_key: &str) -> Result<Option<RequestRecord>, LedgerError> {
        self.records.read(&format!("requests/{request_key}.json")).await
    }

    /// Writes a request's record.
    pub async fn put_request(&self, record: &RequestRecord) -> Result<(), LedgerError> {
        self.records.write(&format!("requests/{}.json", record.request_key), record).await
    }

    /// A job's record.
    pub async fn job(&self, job_id: &str) -> Result<Option<JobRecord>, LedgerError> {
        self.records.read(&format!("jobs/{job_id}.json")).await
    }

    /// Writes a job's record.
    pub async fn put_job(&self, record: &JobRecord) -> Result<(), LedgerError> {
        self.records.write(&format!("jobs/{}.json", record.job_id), record).await
    }

    /// The session's latest recorded increment.
    pub async fn session_mark(&self) -> Result<Option<SessionMark>, LedgerError> {
        self.records.read::<SessionMark>("session/last-increment.json").await
    }

    /// Moves the session's mark forward (never back) to the increment of `job_id` of `objects`, ending at `to`,
    /// and each of those objects' positions.
    ///
    /// Two increments can end at the same instant (one adopted, the next submitted at once): the mark then moves to
    /// the one recorded last, so that the next increment's key (named after the mark's job) is a new one.
    pub async fn advance_increment_to(
        &self,
        to: DateTime<Utc>,
        job_id: &str,
        objects: &[String],
    ) -> Result<(), LedgerError> {
        let mut attempt = 1;
        loop {
            let current = self.session_mark().await?;
            let next = SessionMark::advanced(current.as_ref(), to, job_id, objects);
            if current.as_ref() == Some(&next) {
                return Ok(());
            }
            match self.records.write("session/last-increment.json", &next).await {
                // Another producer moved it since it was read: read it again and move it from there.
                Err(LedgerError::Store(e)) if e.is_conflict() && attempt < MARK_ATTEMPTS => attempt += 1,
                written => return written,
            }
        }
    }

    /// The claim on the increment submitted under `idempotency_key`, if a request made one.
    pub async fn increment_claim(&self, idempotency_key: &str) -> Result<Option<IncrementClaim>, LedgerError> {
        self.records.read(&claim_name(idempotency_key)).await
    }

    /// Claims the increment submitted under `idempotency_key` for a request, before submitting it.
    pub async fn claim_increment(&self, idempotency_key: &str, request_key: &str) -> Result<(), LedgerError> {
        let claim = IncrementClaim { request_key: request_key.to_owned() };
        self.records.write(&claim_name(idempotency_key), &claim).await
    }

    /// Proves the ledger's store honours conditional writes (`If-None-Match`, `If-Match`), which keep two
    /// producers from overwriting each other's records: a probe under `probe/` of the prefix. `Err` is permanent
    /// and names the store and the condition it ignored.
    pub async fn prove_conditional_writes(&self) -> Result<(), LedgerError> {
        self.records.prove_conditional_writes().await
    }

    /// The published marks kept beside this ledger.
    pub fn marks(&self) -> Marks {
        Marks::new(self.records.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;

    #[tokio::test]
    async fn the_mark_moves_to_a_later_increment_ending_at_the_same_instant_never_back() {
        let root = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(Arc::new(LocalStore::new(root.path())), "lake", "ledger/");
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let all = ["Account".to_owned()];
        ledger.advance_increment_to(at("2026-03-03T05:32:50Z"), "adopted", &all).await.unwrap();
        ledger.advance_increment_to(at("2026-03-03T05:32:50Z"), "next", &all).await.unwrap();
        assert_eq!(ledger.session_mark().await.unwrap().and_then(|m| m.job_id).as_deref(), Some("next"));
        ledger.advance_increment_to(at("2026-03-03T05:00:00Z"), "older", &all).await.unwrap();
        let mark = ledger.session_mark().await.unwrap().unwrap();
        assert_eq!((mark.to, mark.job_id.as_deref()), (at("2026-03-03T05:32:50Z"), Some("next")));
    }

    /// Where the next increment of `objects` starts, as the producer reads it.
    async fn from(ledger: &Ledger, objects: &[String]) -> Result<Option<DateTime<Utc>>, LedgerError> {
        let starts = ledger.session_mark().await?.map(|m| m.starts_of(objects)).unwrap_or_default();
        Ok(starts.into_values().min())
    }

    #[tokio::test]
    async fn each_object_starts_where_its_own_last_increment_ended() {
        let root = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(Arc::new(LocalStore::new(root.path())), "lake", "ledger/");
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let names = |list: &[&str]| list.iter().map(|o| o.to_string()).collect::<Vec<_>>();
        let daily = names(&["Account", "Invoice"]);
        assert_eq!(from(&ledger, &daily).await.unwrap(), None, "nothing exported yet");
        ledger.advance_increment_to(at("2026-03-01T05:00:00Z"), "day-1", &daily).await.unwrap();
        ledger.advance_increment_to(at("2026-03-02T05:00:00Z"), "subset", &names(&["Account"])).await.unwrap();
        assert_eq!(from(&ledger, &names(&["Account"])).await.unwrap(), Some(at("2026-03-02T05:00:00Z")));
        assert_eq!(from(&ledger, &daily).await.unwrap(), Some(at("2026-03-01T05:00:00Z")), "Invoice's");
        // An object new to the session (a first load) has no position of its own.
        let with_new = names(&["Account", "Contact"]);
        assert_eq!(from(&ledger, &with_new).await.unwrap(), Some(at("2026-03-02T05:00:00Z")));
        assert_eq!(from(&ledger, &names(&["Contact"])).await.unwrap(), None);

        // A mark of an earlier build (one position for all): every object starts at its end until it moves.
        ledger
            .records
            .write("session/last-increment.json", &serde_json::json!({"to": "2026-03-05T05:00:00Z"}))
            .await
            .unwrap();
        assert_eq!(from(&ledger, &daily).await.unwrap(), Some(at("2026-03-05T05:00:00Z")));
        ledger.advance_increment_to(at("2026-03-06T05:00:00Z"), "subset-2", &names(&["Account"])).await.unwrap();
        assert_eq!(from(&ledger, &daily).await.unwrap(), Some(at("2026-03-05T05:00:00Z")), "Invoice's");
        assert_eq!(from(&ledger, &names(&["Account"])).await.unwrap(), Some(at("2026-03-06T05:00:00Z")));
    }

    #[tokio::test]
    async fn a_stale_write_of_another_process_is_a_conflict_not_a_lost_update() {
        let root = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(root.path()));
        // Two processes, each with its own handle on the one ledger.
        let (one, two) = (Ledger::new(store.clone(), "lake", "ledger/"), Ledger::new(store, "lake", "ledger/"));
        let record = |request_key: &str, at: &str| JobRecord {
            job_id: "2c92c0f966cd4f580166ec0ac89d5bb7".into(),
            request_key: request_key.into(),
            kind: JobKind::Increment,
            objects: vec!["Account".into()],
            window: Window { from: None, to: at.parse().unwrap() },
            starts: BTreeMap::new(),
            submitted_at: at.parse().unwrap(),
            adopted: false,
            enqueued: false,
            until: None,
        };
        let conflict =
            |written: Result<(), LedgerError>| matches!(written, Err(LedgerError::Store(e)) if e.is_conflict());
        // Both find no record; the first to create it wins, the other is told.
        assert_eq!(one.job("2c92c0f966cd4f580166ec0ac89d5bb7").await.unwrap(), None);
        assert_eq!(two.job("2c92c0f966cd4f580166ec0ac89d5bb7").await.unwrap(), None);
        one.put_job(&record("r1", "2026-03-01T05:00:00Z")).await.unwrap();
        assert!(conflict(two.put_job(&record("r2", "2026-03-01T05:00:01Z")).await), "a second create");
        // Both read it; one updates it; the other's update of what it read is refused.
        let read = two.job("2c92c0f966cd4f580166ec0ac89d5bb7").await.unwrap().unwrap();
        assert_eq!(read.request_key, "r1");
        one.put_job(&JobRecord { enqueued: true, ..read.clone() }).await.unwrap();
        assert!(conflict(two.put_job(&JobRecord { adopted: true, ..read }).await), "an update of a stale version");
        // Read again, it writes.
        let fresh = two.job("2c92c0f966cd4f580166ec0ac89d5bb7").await.unwrap().unwrap();
        assert!(fresh.enqueued);
        two.put_job(&JobRecord { adopted: true, ..fresh }).await.unwrap();
        let last = one.job("2c92c0f966cd4f580166ec0ac89d5bb7").await.unwrap().unwrap();
        assert!(last.enqueued && last.adopted, "neither update lost");
        // The session mark moves on from whatever the other process wrote.
        let all = ["Account".to_owned(), "Invoice".to_owned()];
        two.session_mark().await.unwrap();
        one.advance_increment_to("2026-03-02T05:00:00Z".parse().unwrap(), "a", &all[..1]).await.unwrap();
        two.advance_increment_to("2026-03-03T05:00:00Z".parse().unwrap(), "b", &all[1..]).await.unwrap();
        let mark = one.session_mark().await.unwrap().unwrap();
        assert_eq!(mark.job_id.as_deref(), Some("b"));
        assert_eq!(mark.objects.len(), 2, "Account's position kept: {mark:?}");
    }
}
