//! Serving export requests: plan, record, submit, record, enqueue, in that order, resumable at every step.
//!
//! # A request's states
//! received -> planned (request record written, nothing submitted yet) -> for each planned job: submitted (job id
//! recorded) -> enqueued (job message sent, recorded) -> done (message deleted). A request that is not valid goes
//! to the requests DLQ with its reason and is deleted; a request that meets a busy Zuora is put back with a delay
//! and its request id pinned, so it resumes from its record; any other failure leaves the message to be received
//! again (and dead-lettered by SQS after too many receives).

use crate::increment::increment_key;
use crate::plan::{backfill_explained, plan, windowed_query};
use chrono::{DateTime, Utc};
use common::catalogue::Catalogue;
use common::clock::Clock;
use common::config::{Config, FullExportConfig, SessionConfig};
use common::ledger::{JobRecord, Ledger, LedgerError, PlannedJob, RequestRecord};
use common::messages::{ExportFrom, ExportRequest, InvalidRequest, JobKind, Window};
use common::queue::{Inbox, OutgoingMessage, Queue, QueueError, ReceivedMessage};
use common::secret::Secret;
use common::services::Services;
use common::zuora::{BatchQueryRequest, DataCenter, DeletedSpec, Job, ZuoraClient, ZuoraError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::{Instrument, error, info, info_span, warn};

/// Why a request was not (fully) served.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request can never succeed as sent; it goes to the DLQ with this reason.
    #[error("{0}")]
    Rejected(String),
    /// Zuora is busy (too many concurrent jobs, rate limits): try the rest later.
    #[error("Zuora is busy: {0}")]
    Busy(ZuoraError),
    /// Anything else that may pass: the message is received again later.
    #[error(transparent)]
    Transient(#[from] TransientError),
}

/// A failure worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum TransientError {
    /// The ledger could not be read or written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The jobs queue refused the job message.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Zuora failed in a way that may pass.
    #[error(transparent)]
    Zuora(ZuoraError),
}

impl From<LedgerError> for RequestError {
    fn from(e: LedgerError) -> Self {
        Self::Transient(e.into())
    }
}

impl From<QueueError> for RequestError {
    fn from(e: QueueError) -> Self {
        Self::Transient(e.into())
    }
}

impl From<ZuoraError> for RequestError {
    fn from(e: ZuoraError) -> Self {
        match e {
            e if e.is_busy() => Self::Busy(e),
            e if e.is_retryable() => Self::Transient(TransientError::Zuora(e)),
            e => Self::Rejected(format!("Zuora refused the job: {e}")),
        }
    }
}

/// What a served request produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The request's key in the ledger.
    pub request_key: String,
    /// Its jobs, in order.
    pub job_ids: Vec<String>,
}

/// The producer's dependencies.
pub struct Producer {
    zuora: ZuoraClient,
    ledger: Ledger,
    jobs: Arc<dyn Queue>,
    catalogue: Catalogue,
    session: SessionConfig,
    full_export: FullExportConfig,
    clock: Clock,
    notify_url: Option<Secret>,
}

impl Producer {
    /// A producer.
    pub fn new(
        zuora: ZuoraClient,
        ledger: Ledger,
        jobs: Arc<dyn Queue>,
        catalogue: Catalogue,
        session: SessionConfig,
        full_export: FullExportConfig,
    ) -> Self {
        Self { zuora, ledger, jobs, catalogue, session, full_export, clock: Clock::System, notify_url: None }
    }

    /// The producer of a configuration, on the services it names (its Zuora client needs the secret).
    pub fn from_config(config: &Config, services: &Services) -> anyhow::Result<Self> {
        Ok(Self::new(
            ZuoraClient::new(config.zuora.clone())?,
            Ledger::new(services.store.clone(), &config.ledger.bucket, &config.ledger.prefix),
            services.queues.jobs.clone(),
            config.catalogue()?,
            config.session.clone(),
            config.full_export.clone(),
        )
        .with_notify_url(config.producer.notify_url.clone()))
    }

    /// The same producer having Zuora call `url` when each of its jobs completes (`producer.notify_url`).
    pub fn with_notify_url(mut self, url: Option<Secret>) -> Self {
        self.notify_url = url;
        self
    }

    /// The same producer reading `clock` for "now" (the chaos harness's simulated time).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The same producer exporting `catalogue`'s objects (the chaos harness's catalogue, changed mid-seed).
    pub fn with_catalogue(mut self, catalogue: Catalogue) -> Self {
        self.catalogue = catalogue;
        self
    }

    fn data_center(&self) -> DataCenter {
        self.zuora.config().data_center
    }

    /// A request body, parsed and checked against the catalogue and the time now.
    pub fn parse(&self, body: &str) -> Result<ExportRequest, InvalidRequest> {
        let names: Vec<&str> = self.catalogue.objects.iter().map(|o| o.name.as_str()).collect();
        ExportRequest::parse(body, &names, self.clock.now())
    }

    /// Serves one request body. `fallback_key` (the queue message id) identifies it when it has no `requestId`,
    /// so a redelivery of the same message resumes the same record.
    pub async fn serve(&self, body: &str, fallback_key: &str) -> Result<Served, RequestError> {
        let now = self.clock.now();
        let request = self.parse(body).map_err(|e| RequestError::Rejected(e.0))?;
        let request_key = request.request_id.clone().unwrap_or_else(|| fallback_key.to_owned());
        let mut record = match self.ledger.request(&request_key).await? {
            Some(record) if !record.request.same_export(&request) => {
                let recorded = serde_json::to_string(&record.request).unwrap_or_default();
                return Err(RequestError::Rejected(format!(
                    "requestId {request_key:?} already names another request ({recorded}); send this one under a new requestId"
                )));
            }
            Some(record) => record,
            None => {
                let objects = match &request.objects {
                    Some(names) => self.catalogue.select(names).map_err(|unknown| {
                        RequestError::Rejected(format!("objects: unknown {}", unknown.join(", ")))
                    })?,
                    None => self.catalogue.objects.iter().collect(),
                };
                let jobs = plan(&request, &request_key, &objects, &self.full_export, now);
                if jobs.is_empty() && request.export_from_date == ExportFrom::Lookback {
                    return Err(RequestError::Rejected(
                        "exportFromDate: \"lookback\" and no object of the request has lookback_days in the catalogue"
                            .to_owned(),
                    ));
                }
                if let ExportFrom::Date(date) = request.export_from_date {
                    info!(%request_key, "a backfill of {date}: it exports {}", backfill_explained(date, self.data_center()));
                }
                let record = RequestRecord { request_key: request_key.clone(), request, received_at: now, jobs };
                self.ledger.put_request(&record).await?;
                record
            }
        };
        for index in 0..record.jobs.len() {
            match (&record.jobs[index].job_id, record.jobs[index].window) {
                (None, _) => self.submit_planned(&mut record, index).await?,
                // A resumed increment: the run that recorded it may have stopped before moving the mark.
                (Some(job_id), Some(window)) if record.jobs[index].kind == JobKind::Increment => {
                    self.ledger.advance_increment_to(window.to, job_id, &record.jobs[index].objects).await?;
                }
                _ => {}
            }
            if !record.jobs[index].enqueued {
                self.enqueue_planned(&mut record, index).await?;
            }
        }
        let job_ids = record.jobs.iter().filter_map(|j| j.job_id.clone()).collect();
        Ok(Served { request_key, job_ids })
    }

    async fn submit_planned(&self, record: &mut RequestRecord, index: usize) -> Result<(), RequestError> {
        let planned = record.jobs[index].clone();
        if planned.kind == JobKind::Increment {
            // A job Zuora ran that we do not know of holds the window before ours: adopt it first.
            self.reconcile().await?;
        }
        let submitted_at = self.clock.now();
        let request = self.batch_request(&record.request_key, &planned)?;
        let mut attempts = 0;
        let (job, start, known) = loop {
            attempts += 1;
            let start = self.start_of(&planned).await?;
            let claimed_by_another = self.claim(&planned, &start.idempotency_key, &record.request_key).await?;
            let mut job = self.zuora.submit(&request, &start.idempotency_key).await?;
            if planned.kind == JobKind::Increment {
                // The key may name an increment submitted earlier (by another request, or before a crash; the
                // answer shows it as just submitted either way): if it has started, its window ends when it
                // started, not now.
                job = self.zuora.job(&job.id).await?;
            }
            let known = self.ledger.job(&job.id).await?;
            if planned.kind == JobKind::Increment
                && attempts < 3
                && self.moved_past_another(&job, known.as_ref(), claimed_by_another, &record.request_key).await?
            {
                continue;
            }
            break (job, start, known);
        };
        let started = job.start_time.as_ref().and_then(|t| t.to_utc(self.data_center()));
        let to = planned.to.unwrap_or_else(|| started.unwrap_or(submitted_at).min(submitted_at));
        // Never before its start: an increment adopted while this one was being submitted may have moved the mark
        // past this request's own clock.
        let window = Window { from: start.from, to: start.from.map_or(to, |from| to.max(from)) };
        info!(job_id = %job.id, kind = ?planned.kind, objects = planned.objects.len(), from = ?window.from,
              to = %window.to, "submitted AQuA job");
        // The job's record first: a request that names a job always finds its record.
        if known.is_none() {
            let job_record = JobRecord {
                job_id: job.id.clone(),
                request_key: record.request_key.clone(),
                kind: planned.kind,
                objects: planned.objects.clone(),
                window,
                starts: start.starts,
                submitted_at,
                adopted: false,
                enqueued: false,
                until: planned.until,
            };
            self.ledger.put_job(&job_record).await?;
        }
        let slot = &mut record.jobs[index];
        slot.job_id = Some(job.id.clone());
        slot.window = Some(window);
        self.ledger.put_request(record).await?;
        if planned.kind == JobKind::Increment {
            self.ledger.advance_increment_to(window.to, &job.id, &planned.objects).await?;
        }
        Ok(())
    }

    /// Where a planned job starts, and the key it is submitted under: an increment's objects each at their own
    /// position (the job's window at the earliest), under the session's next increment key ([`increment_key`]);
    /// a backfill or a full export's window where it was planned, under its own key.
    async fn start_of(&self, planned: &PlannedJob) -> Result<Start, RequestError> {
        Ok(match planned.kind {
            JobKind::Increment => {
                let mark = self.ledger.session_mark().await?;
                let starts = mark.as_ref().map(|m| m.starts_of(&planned.objects)).unwrap_or_default();
                let idempotency_key = increment_key(&self.session, mark.as_ref());
                Start { from: starts.values().min().copied(), starts, idempotency_key }
            }
            JobKind::Backfill | JobKind::FullWindow => {
                Start { from: planned.from, starts: BTreeMap::new(), idempotency_key: planned.idempotency_key.clone() }
            }
        })
    }

    /// Claims an increment's key for `request_key` unless another request has; true when another has. A claim of
    /// another request means that request submitted (or was about to submit) under the key and may have died
    /// before recording the job.
    async fn claim(&self, planned: &PlannedJob, key: &str, request_key: &str) -> Result<bool, RequestError> {
        if planned.kind != JobKind::Increment {
            return Ok(false);
        }
        match self.ledger.increment_claim(key).await? {
            Some(claim) => Ok(claim.request_key != request_key),
            None => {
                self.ledger.claim_increment(key, request_key).await?;
                Ok(false)
            }
        }
    }

    /// When the increment Zuora returned for the session's key is another request's, moves the session past it
    /// (enqueued, the mark moved) and returns true: this request then submits its own increment from there.
    async fn moved_past_another(
        &self,
        job: &Job,
        known: Option<&JobRecord>,
        claimed_by_another: bool,
        request_key: &str,
    ) -> Result<bool, RequestError> {
        match known {
            // Another request recorded that increment and stopped before moving the mark past it (and perhaps
            // before enqueuing it): enqueue it, move the mark, then submit this request's own.
            Some(known) if known.request_key != request_key => {
                self.ledger.advance_increment_to(known.window.to, &job.id, &known.objects).await?;
            }
            // A job nobody recorded, under a key another request claimed: that request submitted it and died (a
            // killed `producer submit`). Its window ends when it started, perhaps long before now: adopt it, then
            // submit this request's own increment from there. (Had the other request died before submitting, the
            // job is this request's, and adopting it costs one small increment.)
            None if claimed_by_another => {
                let orphan = self.adopted_record(job).await?;
                warn!(job_id = %job.id, to = %orphan.window.to, "the session's key names an increment nobody recorded: adopting it");
                self.ledger.put_job(&orphan).await?;
                self.ledger.advance_increment_to(orphan.window.to, &job.id, &orphan.objects).await?;
            }
            _ => return Ok(false),
        }
        self.enqueue_job_at_mark().await?;
        Ok(true)
    }

    async fn enqueue_planned(&self, record: &mut RequestRecord, index: usize) -> Result<(), RequestError> {
        let Some(job_id) = record.jobs[index].job_id.clone() else {
            return Ok(());
        };
        let planned = &record.jobs[index];
        let mut job_record = match (self.ledger.job(&job_id).await?, planned.window) {
            (Some(job_record), _) => job_record,
            // Written by a build that recorded the request before the job: the request has all it needs. The job's
            // record is written before its message is sent: a consumer works only on jobs the ledger holds.
            (None, Some(window)) => {
                let job_record = JobRecord {
                    job_id: job_id.clone(),
                    request_key: record.request_key.clone(),
                    kind: planned.kind,
                    objects: planned.objects.clone(),
                    window,
                    starts: BTreeMap::new(),
                    submitted_at: window.to,
                    adopted: false,
                    enqueued: false,
                    until: planned.until,
                };
                self.ledger.put_job(&job_record).await?;
                job_record
            }
            (None, None) => {
                return Err(RequestError::Transient(TransientError::Ledger(LedgerError::Corrupt {
                    key: format!("jobs/{job_id}.json"),
                    detail: "the request names a job with no record and no window".to_owned(),
                })));
            }
        };
        // Reconciliation may have adopted and enqueued this very job after a crash: enqueue it once.
        if !job_record.enqueued {
            self.enqueue(&job_record).await?;
            job_record.enqueued = true;
            self.ledger.put_job(&job_record).await?;
        }
        record.jobs[index].enqueued = true;
        self.ledger.put_request(record).await?;
        Ok(())
    }

    async fn enqueue(&self, job: &JobRecord) -> Result<(), QueueError> {
        #[allow(clippy::expect_used)]
        let body = serde_json::to_string(&job.job_message()).expect("a job message serialises");
        self.jobs.send(OutgoingMessage::new(body)).await?;
        info!(job_id = %job.job_id, "enqueued job");
        Ok(())
    }

    fn batch_request(&self, request_key: &str, planned: &PlannedJob) -> Result<BatchQueryRequest, RequestError> {
        let objects = self.catalogue.select(&planned.objects).map_err(|unknown| {
            RequestError::Rejected(format!("objects no longer in the catalogue: {}", unknown.join(", ")))
        })?;
        let name = format!("zle-{}", request_key);
        let (session, from) = (&self.session, planned.from);
        let request = match planned.kind {
            JobKind::Increment => {
                // The same body whichever request submits it: its idempotency key is the session's, not the
                // request's (see `increment_key`).
                let queries = objects.iter().map(|o| o.to_query()).collect();
                BatchQueryRequest::stateful(&session.increment_job_name, &session.partner, &session.project, queries)
                    .with_version(&session.version)
            }
            JobKind::Backfill => {
                let queries = objects.iter().map(|o| o.to_query()).collect();
                let request = BatchQueryRequest::stateful(&name, &session.partner, &session.project, queries)
                    .with_version(&session.version);
                match from {
                    Some(from) => request.with_incremental_time(from, self.data_center()),
                    None => request,
                }
            }
            JobKind::FullWindow => {
                // Stateless, so the daily session never moves; deleted rows are asked for explicitly.
                let (Some(from), Some(to)) = (planned.from, planned.to) else {
                    return Err(RequestError::Rejected("a full-export window without bounds".to_owned()));
                };
                let queries = objects
                    .iter()
                    .map(|o| {
                        let mut query = o.to_query();
                        query.query = windowed_query(&o.query, from, to);
                        query.deleted = query.deleted.map(|d| DeletedSpec { force_export: Some(true), ..d });
                        query
                    })
                    .collect();
                let mut request = BatchQueryRequest::stateful(&name, "", "", queries);
                request.partner = None;
                request.project = None;
                request
            }
        };
        Ok(request.with_format(session.file_format.name()).with_notify_url(self.notify_url.as_ref()))
    }

    /// Compares Zuora's last completed job of the session with the ledger and adopts it if the ledger has no
    /// record of it (a crash between submit and record, or a job submitted from outside): recorded, enqueued once.
    /// Returns the adopted job's id.
    pub async fn reconcile(&self) -> Result<Option<String>, RequestError> {
        self.enqueue_job_at_mark().await?;
        let Some(job) = self.zuora.last_completed_job(&self.session.partner, &self.session.project).await? else {
            return Ok(None);
        };
        if let Some(known) = self.ledger.job(&job.id).await? {
            if !known.enqueued {
                self.enqueue(&known).await?;
                self.ledger.put_job(&JobRecord { enqueued: true, ..known }).await?;
            }
            return Ok(None);
        }
        let record = self.adopted_record(&job).await?;
        warn!(job_id = %job.id, kind = ?record.kind, "Zuora ran a job the ledger has no record of: adopting it");
        self.ledger.put_job(&record).await?;
        self.enqueue(&record).await?;
        self.ledger.put_job(&JobRecord { enqueued: true, ..record.clone() }).await?;
        if record.kind == JobKind::Increment {
            self.ledger.advance_increment_to(record.window.to, &job.id, &record.objects).await?;
        }
        Ok(Some(job.id))
    }

    /// Enqueues the session's latest recorded increment if it is not on the jobs queue yet: a `producer submit`
    /// killed between recording its job and enqueuing it leaves a request nobody resumes (its key was its own),
    /// and Zuora's "last completed job" soon names another job (the next increment, or a backfill, which runs in
    /// the same session). Each increment starts where the one at the mark ends, so this one check before every
    /// increment keeps them all enqueued.
    async fn enqueue_job_at_mark(&self) -> Result<(), RequestError> {
        let Some(job_id) = self.ledger.session_mark().await?.and_then(|m| m.job_id) else { return Ok(()) };
        if let Some(job) = self.ledger.job(&job_id).await?
            && !job.enqueued
        {
            warn!(job_id = %job.job_id, request_key = %job.request_key, "the latest increment was never enqueued: enqueuing it");
            self.enqueue(&job).await?;
            self.ledger.put_job(&JobRecord { enqueued: true, ..job }).await?;
        }
        Ok(())
    }

    async fn adopted_record(&self, job: &Job) -> Result<JobRecord, LedgerError> {
        let dc = self.data_center();
        // Never later than now: a start Zuora reports in the future (a wrong data centre's time zone) would make
        // the window the object's latest data for ever.
        let now = self.clock.now();
        let started = job.start_time.as_ref().and_then(|t| t.to_utc(dc)).map_or(now, |t| t.min(now));
        let objects: Vec<String> = job.batches.iter().filter_map(|b| b.name.clone()).collect();
        let (kind, from, starts) = match job.incremental_time.as_ref().and_then(|t| t.to_utc(dc)) {
            Some(from) => (JobKind::Backfill, Some(from), BTreeMap::new()),
            None => {
                let starts = self.ledger.session_mark().await?.map(|m| m.starts_of(&objects)).unwrap_or_default();
                (JobKind::Increment, starts.values().min().copied(), starts)
            }
        };
        Ok(JobRecord {
            job_id: job.id.clone(),
            request_key: format!("adopted:{}", job.id),
            kind,
            objects,
            window: Window { from, to: started },
            starts,
            submitted_at: started,
            adopted: true,
            enqueued: false,
            until: None,
        })
    }
}

/// Where a planned job starts and the key it is submitted under.
struct Start {
    /// The job's window's start (`None`: a first load).
    from: Option<DateTime<Utc>>,
    /// Each object's own start (increments).
    starts: BTreeMap<String, DateTime<Utc>>,
    idempotency_key: String,
}

/// Long-polls the requests queue until `shutdown` resolves; the message being served is finished first.
pub async fn run(
    producer: &Producer,
    requests: &Inbox,
    settings: &common::config::ProducerSettings,
    shutdown: impl Future<Output = ()>,
) {
    if let Err(e) = producer.reconcile().await {
        error!(error = %e, "reconciliation at start-up failed; it runs again before each increment");
    }
    tokio::pin!(shutdown);
    loop {
        let batch = tokio::select! {
            () = &mut shutdown => break,
            batch = requests.queue.receive(10, Duration::from_secs(settings.wait_secs)) => batch,
        };
        let messages = match batch {
            Ok(messages) => messages,
            Err(e) => {
                error!(error = %e, "cannot receive requests; retrying in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        for message in messages {
            let span = info_span!("request", message_id = %message.id, receive_count = message.receive_count);
            handle(producer, requests, settings, message).instrument(span).await;
        }
    }
    info!("stopped receiving requests");
}

/// Serves one received request and settles its message.
pub async fn handle(
    producer: &Producer,
    requests: &Inbox,
    settings: &common::config::ProducerSettings,
    message: ReceivedMessage,
) {
    if producer.parse(&message.body).is_ok_and(|request| request.request_id.is_none()) {
        // A request without a `requestId` is known by its message id, which a DLQ redrive changes: before anything
        // is submitted for it, it is sent again with its id pinned into the body, so every later copy (a redelivery,
        // the DLQ's, a redriven one) resumes the same record instead of submitting its jobs again.
        let pinned = OutgoingMessage::new(pin_request_id(&message.body, &message.id));
        match requests.again_after(&message, pinned, Duration::ZERO).await {
            Ok(()) => info!(request_key = %message.id, "request id pinned; the request is served from its pinned copy"),
            Err(e) => error!(error = %e, "could not pin the request's id; it will be received again"),
        }
        return;
    }
    let settled = match producer.serve(&message.body, &message.id).await {
        Ok(served) => {
            info!(request_key = %served.request_key, jobs = ?served.job_ids, "request served");
            requests.done(&message).await
        }
        Err(RequestError::Rejected(reason)) => {
            warn!(%reason, "request rejected: moving it to the dead-letter queue");
            requests.dead_letter(&message, &reason).await
        }
        Err(RequestError::Busy(e)) => {
            let delay = Duration::from_secs(settings.busy_retry_secs);
            warn!(error = %e, delay_secs = delay.as_secs(), "Zuora is busy: the request resumes later");
            let again = OutgoingMessage::new(pin_request_id(&message.body, &message.id));
            requests.again_after(&message, again, delay).await
        }
        Err(RequestError::Transient(e)) => {
            warn!(error = %e, "request failed for now; it will be received again");
            let hidden = Duration::from_secs(settings.busy_retry_secs.min(900));
            requests.queue.set_visibility(&message.receipt, hidden).await
        }
    };
    if let Err(e) = settled {
        error!(error = %e, "could not settle the request message; it will be received again");
    }
}

/// The body with `requestId` set to its ledger key, so a re-sent copy resumes the same record.
fn pin_request_id(body: &str, message_id: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.entry("requestId").or_insert_with(|| serde_json::Value::String(message_id.to_owned()));
            serde_json::Value::Object(map).to_string()
        }
        _ => body.to_owned(),
    }
}
