//! The simulated tenant: tables, tokens, jobs, stateful sessions, files and faults, behind one handle.
//!
//! The handle and the state it keeps are here; what each part does is in its room: `tokens`, `faults`,
//! `tables` (changes and the ground truth), `request` (a submission read whole), `jobs` (submission,
//! sessions, status, cancellation), `notify` (calls of a job's `notifyUrl`) and `files`.

use crate::clock::SimClock;
use crate::config::{DataCenter, Settings, SimConfig};
use crate::data::{Event, EventKind, Generator, Related, Snapshot, Table, mix};
use crate::files::{BatchPlan, DeletedColumn, FileSpec, Window};
use crate::schema::{ObjectSchema, objects_with};
use crate::zoql;
use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::America::Los_Angeles;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Zuora's limit of queries per job.
const MAX_QUERIES: usize = 50;

/// The code of a body Zuora cannot read at all; answered with HTTP 400, not as an AQuA error.
pub const MALFORMED: &str = "50000090";

/// A failure injected into matching requests.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultRule {
    /// `token`, `submit`, `job`, `last`, `cancel`, `file` or `any`.
    pub endpoint: String,
    /// Answer with this HTTP status instead (e.g. 429, 500, 503).
    pub status: Option<u16>,
    /// `Retry-After` sent with `status`.
    pub retry_after_secs: Option<u64>,
    /// Apply to the next N matching requests only.
    pub times: Option<u32>,
    /// Apply to each matching request with this probability (seeded).
    pub rate: Option<f64>,
    /// Delay before answering.
    pub latency_ms: Option<u64>,
    /// Files: abort the connection after this many body bytes.
    pub reset_after_bytes: Option<u64>,
    /// Files: end the body cleanly after this many bytes.
    pub truncate_after_bytes: Option<u64>,
    /// Files: send at most this many bytes per second.
    pub bandwidth_bytes_per_sec: Option<u64>,
    /// Jobs: report this status instead of the real one.
    pub job_status: Option<String>,
}

/// Changes to make to an object's table.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mutation {
    /// New rows.
    pub insert: u64,
    /// Existing rows changed.
    pub update: u64,
    /// Existing rows deleted.
    pub delete: u64,
    /// Existing rows changed without moving their `UpdatedDate` (see `EventKind::UndatedUpdate`).
    pub undated_update: u64,
}

/// The ids a mutation touched.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MutationResult {
    /// Inserted rows.
    pub inserted: Vec<String>,
    /// Updated rows.
    pub updated: Vec<String>,
    /// Deleted rows.
    pub deleted: Vec<String>,
    /// Rows changed without a new `UpdatedDate`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undated: Vec<String>,
}

/// A job as the control API lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSummary {
    /// Job id.
    pub id: String,
    /// Status now.
    pub status: String,
    /// Stateful session, if any.
    pub partner: Option<String>,
    /// Stateful session, if any.
    pub project: Option<String>,
    /// Submitted at (simulated clock).
    pub submitted_at: DateTime<Utc>,
    /// When it ends (or ended): completed, unless it is cancelled first.
    pub ends_at: DateTime<Utc>,
    /// The `Idempotency-Key` it was submitted with.
    pub idempotency_key: Option<String>,
    /// The `incrementalTime` it was submitted with (a stateful job since a time, which does not move the session).
    pub incremental_time: Option<DateTime<Utc>>,
    /// Its batches.
    pub batches: Vec<BatchSummary>,
}

impl JobSummary {
    /// True for an increment of a stateful session: one that continues the session from where it was.
    pub fn is_session_increment(&self) -> bool {
        self.partner.is_some() && self.incremental_time.is_none()
    }
}

/// A batch as the control API lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSummary {
    /// Query name.
    pub name: Option<String>,
    /// The FROM object.
    pub object: String,
    /// Full load.
    pub full: bool,
    /// Records, once completed.
    pub record_count: Option<u64>,
    /// Window lower bound (absent: from the beginning).
    pub from: Option<DateTime<Utc>>,
    /// Window upper bound.
    pub to: DateTime<Utc>,
}

/// A row that was deleted, as the control API lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeletedRow {
    /// Its Id.
    pub id: String,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When it was deleted.
    pub deleted_at: DateTime<Utc>,
    /// Whether a completed job returned it flagged deleted.
    pub reported: bool,
}

/// A control operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No such object.
    #[error("unknown object {0}")]
    UnknownObject(String),
    /// A query the simulator cannot read.
    #[error("{0}")]
    BadQuery(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Normal,
    Aborted(String),
    DeletedNotAllowed,
}

struct BatchEntry {
    batch_id: String,
    name: Option<String>,
    query: String,
    batch_type: String,
    api_version: String,
    deleted: Option<Value>,
    full: bool,
    outcome: Outcome,
    plan: Arc<BatchPlan>,
    record_count: Option<u64>,
    file_ids: Vec<String>,
    segmented: bool,
}

struct JobEntry {
    id: String,
    idempotency_key: Option<String>,
    name: Option<String>,
    version: String,
    format: String,
    encrypted: String,
    partner: Option<String>,
    project: Option<String>,
    stateful: bool,
    offset: i64,
    incremental_time: Option<DateTime<Utc>>,
    notify_url: Option<String>,
    /// Its `notifyUrl` was called (or will never be).
    notified: bool,
    submitted_at: DateTime<Utc>,
    /// How long it waits in the queue at least (`job_queue_secs` at submission).
    queue: Duration,
    /// How long it executes (`job_execution_secs` at submission).
    execution: Duration,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    cancelled_at: Option<DateTime<Utc>>,
    batches: Vec<BatchEntry>,
}

impl JobEntry {
    fn status(&self, now: DateTime<Utc>) -> &'static str {
        if self.cancelled_at.is_some() {
            "cancelled"
        } else if now < self.start_at {
            "submitted"
        } else if now < self.end_at {
            "executing"
        } else if self.batches.iter().any(|b| matches!(b.outcome, Outcome::Aborted(_))) {
            "aborted"
        } else {
            "completed"
        }
    }
}

#[derive(Clone, PartialEq)]
struct SessionQuery {
    text: String,
    deleted: Option<Value>,
    mark: DateTime<Utc>,
}

#[derive(Default)]
struct Session {
    queries: HashMap<String, SessionQuery>,
    last_queries: Option<Vec<Value>>,
    busy_until: Option<DateTime<Utc>>,
}

struct FileEntry {
    spec: FileSpec,
    job_end: DateTime<Utc>,
    size: Option<u64>,
    /// Where the file's bytes were written, once `store_file` asked for it.
    stored: Option<std::path::PathBuf>,
}

#[derive(Default)]
struct Jobs {
    list: Vec<JobEntry>,
    by_id: HashMap<String, usize>,
    sessions: HashMap<(String, String), Session>,
    files: HashMap<String, FileEntry>,
    idempotency: HashMap<String, String>,
}

struct ActiveFault {
    rule: FaultRule,
    remaining: Option<u32>,
}

/// An API error answered with HTTP 200, as Zuora does for AQuA.
#[derive(Debug)]
pub struct ApiError {
    /// Zuora's code.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

fn api_error(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError { code, message: message.into() }
}

/// A file ready to be sent.
pub struct Download {
    /// What to render.
    pub spec: FileSpec,
    /// Its size, when known.
    pub size: Option<u64>,
    /// Its bytes on disk, when they were stored: sent from there instead of rendered.
    pub stored: Option<std::path::PathBuf>,
}

/// Why a file cannot be sent.
pub enum DownloadError {
    /// Unknown or purged.
    NotFound,
    /// Over the size limit, which is given.
    TooLarge(u64),
}

/// The simulated tenant.
pub struct Sim {
    /// Fixed configuration.
    pub config: SimConfig,
    settings: RwLock<Settings>,
    /// The clock.
    pub clock: SimClock,
    schemas: Vec<Arc<ObjectSchema>>,
    tables: Mutex<HashMap<&'static str, Table>>,
    tokens: Mutex<HashMap<String, DateTime<Utc>>>,
    jobs: Mutex<Jobs>,
    faults: Mutex<Vec<ActiveFault>>,
    rng: Mutex<u64>,
    abort_next: Mutex<HashMap<String, String>>,
    calls: Mutex<std::collections::BTreeMap<String, u64>>,
    notifier: Arc<tokio::sync::Notify>,
}

fn secs(seconds: f64) -> Duration {
    Duration::microseconds((seconds.max(0.0) * 1_000_000.0) as i64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sim {
    /// A tenant as configured.
    pub fn new(config: SimConfig) -> Self {
        let schemas: Vec<Arc<ObjectSchema>> = objects_with(&config.custom_fields).into_iter().map(Arc::new).collect();
        let tables = schemas
            .iter()
            .map(|s| {
                let rows = config
                    .rows
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(s.name))
                    .map_or(s.default_rows, |(_, rows)| *rows);
                (s.name, Table::new(rows))
            })
            .collect();
        let clock = SimClock::new(config.clock_start.unwrap_or_else(Utc::now));
        Self {
            settings: RwLock::new(config.settings.clone()),
            rng: Mutex::new(mix(config.seed ^ 0x5EED)),
            config,
            clock,
            schemas,
            tables: Mutex::new(tables),
            tokens: Mutex::default(),
            jobs: Mutex::default(),
            faults: Mutex::default(),
            abort_next: Mutex::default(),
            calls: Mutex::default(),
            notifier: Arc::default(),
        }
    }

    /// Counts one call of the API (`METHOD /route/{param}`).
    pub fn count_call(&self, route: String) {
        *lock(&self.calls).entry(route).or_default() += 1;
    }

    /// The API calls received so far, by method and route.
    pub fn calls(&self) -> std::collections::BTreeMap<String, u64> {
        lock(&self.calls).clone()
    }

    /// Current settings.
    pub fn settings(&self) -> Settings {
        self.settings.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Moves the clock forward (and the notifications with it).
    pub fn advance_clock(&self, by: Duration) -> DateTime<Utc> {
        let now = self.clock.advance(by);
        self.wake_notifier();
        now
    }

    /// Changes settings.
    pub fn update_settings(&self, f: impl FnOnce(&mut Settings)) {
        f(&mut self.settings.write().unwrap_or_else(|e| e.into_inner()));
    }

    fn random(&self) -> u64 {
        let mut state = lock(&self.rng);
        *state = mix(*state);
        *state
    }

    /// A fresh 32-hex id.
    pub fn new_id(&self) -> String {
        format!("{:016x}{:016x}", self.random(), self.random())
    }

    /// The schema of an object, by case-insensitive name.
    pub fn schema(&self, name: &str) -> Option<Arc<ObjectSchema>> {
        self.schemas.iter().find(|s| s.name.eq_ignore_ascii_case(name)).cloned()
    }

    /// All schemas.
    pub fn schemas(&self) -> &[Arc<ObjectSchema>] {
        &self.schemas
    }

    fn generator(&self, tables: &HashMap<&'static str, Table>) -> Generator {
        Generator {
            seed: self.config.seed,
            genesis: self.config.genesis,
            history: Duration::days(i64::from(self.config.history_days)),
            base_rows: Arc::new(tables.iter().map(|(name, t)| (*name, t.base_rows)).collect()),
        }
    }

    /// A snapshot of an object's table now.
    pub fn snapshot(&self, schema: &Arc<ObjectSchema>) -> Snapshot {
        let tables = lock(&self.tables);
        let table = &tables[schema.name];
        Snapshot::new(schema.clone(), table.base_rows, table.overlay.clone(), self.generator(&tables))
    }

    /// `plan` as its job runs it: the tables (its object's and the related ones) as they are now, read as of the
    /// window's end, so the changes made between the submission and the job's start are in it.
    pub(crate) fn as_run(&self, plan: &BatchPlan) -> BatchPlan {
        BatchPlan {
            snapshot: self.snapshot(&plan.snapshot.schema),
            related: Arc::new(self.related(&plan.query)),
            ..plan.clone()
        }
    }

    /// Snapshots, now, of the objects a query reads joined fields (other than ids) from.
    fn related(&self, query: &zoql::Query) -> Related {
        let targets = query.fields.iter().filter_map(|column| match column {
            zoql::Column::Joined(join) if join.field.is_some() => Some(join.path.target),
            _ => None,
        });
        targets.filter_map(|name| Some((name, self.snapshot(&self.schema(name)?)))).collect()
    }
}

mod faults;
mod files;
mod jobs;
mod notify;
mod request;
mod tables;
mod tokens;

pub use jobs::parse_incremental_time;
pub(crate) use notify::run_notifier;
