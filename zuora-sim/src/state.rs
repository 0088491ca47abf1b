//! The simulated tenant: tables, tokens, jobs, stateful sessions, files and faults, behind one handle.

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
    /// The `Idempotency-Key` it was submitted with.
    pub idempotency_key: Option<String>,
    /// Its batches.
    pub batches: Vec<BatchSummary>,
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
        }
    }

    /// Current settings.
    pub fn settings(&self) -> Settings {
        self.settings.read().unwrap_or_else(|e| e.into_inner()).clone()
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

    /// Snapshots, now, of the objects a query reads joined fields (other than ids) from.
    fn related(&self, query: &zoql::Query) -> Related {
        let targets = query.fields.iter().filter_map(|column| match column {
            zoql::Column::Joined(join) if join.field.is_some() => Some(join.path.target),
            _ => None,
        });
        targets.filter_map(|name| Some((name, self.snapshot(&self.schema(name)?)))).collect()
    }

    // ---- tokens

    /// Issues a token for valid credentials.
    pub fn issue_token(&self, client_id: &str, client_secret: &str) -> Option<(String, u64)> {
        if client_id != self.config.client_id || client_secret != self.config.client_secret {
            return None;
        }
        let token = self.new_id();
        let lifetime = self.config.token_lifetime_secs;
        lock(&self.tokens).insert(token.clone(), self.clock.now() + Duration::seconds(lifetime as i64));
        Some((token, lifetime))
    }

    /// Whether a bearer token is known and not expired.
    pub fn token_valid(&self, token: &str) -> bool {
        lock(&self.tokens).get(token).is_some_and(|expiry| self.clock.now() < *expiry)
    }

    // ---- faults

    /// Replaces the fault rules.
    pub fn set_faults(&self, rules: Vec<FaultRule>) {
        *lock(&self.faults) = rules.into_iter().map(|rule| ActiveFault { remaining: rule.times, rule }).collect();
    }

    /// The rules that apply to this request (spending `times`).
    pub fn faults_for(&self, endpoint: &str) -> Vec<FaultRule> {
        let mut faults = lock(&self.faults);
        let mut hits = Vec::new();
        for fault in faults.iter_mut() {
            if fault.rule.endpoint != endpoint && fault.rule.endpoint != "any" {
                continue;
            }
            if fault.remaining == Some(0) {
                continue;
            }
            if let Some(rate) = fault.rule.rate
                && (self.random() % 1_000_000) as f64 / 1_000_000.0 >= rate
            {
                continue;
            }
            if let Some(n) = fault.remaining.as_mut() {
                *n -= 1;
            }
            hits.push(fault.rule.clone());
        }
        faults.retain(|f| f.remaining != Some(0));
        hits
    }

    /// Makes the next batch on `object` abort with `message`.
    pub fn abort_next_batch(&self, object: &str, message: &str) {
        lock(&self.abort_next).insert(object.to_ascii_lowercase(), message.to_owned());
    }

    // ---- data

    /// Applies changes to an object's table at the current simulated instant.
    pub fn mutate(&self, object: &str, mutation: Mutation) -> Result<MutationResult, SimError> {
        let schema = self.schema(object).ok_or_else(|| SimError::UnknownObject(object.to_owned()))?;
        let now = self.clock.now();
        let snapshot = self.snapshot(&schema);
        let chosen = self.pick_live_rows(&snapshot, now, mutation.update + mutation.delete);
        let (updates, deletes) = chosen.split_at((mutation.update as usize).min(chosen.len()));
        let mut result = MutationResult::default();
        let mut tables = lock(&self.tables);
        let generator = self.generator(&tables);
        let table = tables.get_mut(schema.name).ok_or_else(|| SimError::UnknownObject(object.to_owned()))?;
        let id = |key: u64| {
            let mut out = Vec::new();
            generator.id(schema.name, key, &mut out);
            String::from_utf8_lossy(&out).into_owned()
        };
        for &key in updates {
            table.record(key, Event { at: now, kind: EventKind::Update });
            result.updated.push(id(key));
        }
        for &key in deletes {
            table.record(key, Event { at: now, kind: EventKind::Delete });
            result.deleted.push(id(key));
        }
        for _ in 0..mutation.insert {
            let key = table.next_insert;
            table.next_insert += 1;
            table.record(key, Event { at: now, kind: EventKind::Insert });
            result.inserted.push(id(key));
        }
        Ok(result)
    }

    /// Up to `wanted` distinct live rows, at random (seeded). Draws keys rather than listing the live ones: a
    /// benchmark table of tens of millions of rows must not cost a vector of them per mutation.
    fn pick_live_rows(&self, snapshot: &Snapshot, now: DateTime<Utc>, wanted: u64) -> Vec<u64> {
        let inserted: Vec<u64> = snapshot.overlay.range(crate::data::INSERTED_KEYS..).map(|(k, _)| *k).collect();
        let universe = snapshot.base_rows + inserted.len() as u64;
        let key_at = |i: u64| if i < snapshot.base_rows { i } else { inserted[(i - snapshot.base_rows) as usize] };
        let live = |key: u64| snapshot.state_at(key, now).is_some_and(|s| s.deleted_at.is_none());
        let mut chosen = std::collections::BTreeSet::new();
        if universe == 0 || wanted == 0 {
            return Vec::new();
        }
        let mut draws = wanted.saturating_mul(20).saturating_add(1000);
        while (chosen.len() as u64) < wanted && draws > 0 {
            draws -= 1;
            let key = key_at(self.random() % universe);
            if live(key) {
                chosen.insert(key);
            }
        }
        // Mostly deleted tables (or asking for nearly every row): finish by scanning.
        if (chosen.len() as u64) < wanted {
            for key in snapshot.keys() {
                if chosen.len() as u64 >= wanted {
                    break;
                }
                if live(key) {
                    chosen.insert(key);
                }
            }
        }
        chosen.into_iter().collect()
    }

    /// Resets an object's table to `rows` generated rows.
    pub fn set_rows(&self, object: &str, rows: u64) -> Result<(), SimError> {
        let schema = self.schema(object).ok_or_else(|| SimError::UnknownObject(object.to_owned()))?;
        lock(&self.tables).insert(schema.name, Table::new(rows));
        Ok(())
    }

    /// Rows of every object now: (name, live rows).
    pub fn row_counts(&self) -> Vec<(&'static str, u64)> {
        let now = self.clock.now();
        self.schemas
            .iter()
            .map(|s| {
                let snapshot = self.snapshot(s);
                let is_live = |k: &u64| snapshot.state_at(*k, now).is_some_and(|r| r.deleted_at.is_none());
                let history_over = now >= self.config.genesis + Duration::days(i64::from(self.config.history_days));
                let live = if history_over {
                    // Every generated row exists by now: only the rows with changes need reading (a benchmark
                    // table may have tens of millions of rows).
                    let untouched = snapshot.base_rows - snapshot.overlay.range(..snapshot.base_rows).count() as u64;
                    untouched + snapshot.overlay.keys().filter(|k| is_live(k)).count() as u64
                } else {
                    snapshot.keys().filter(is_live).count() as u64
                };
                (s.name, live)
            })
            .collect()
    }

    /// The live rows of an object now, every field, `Object.Field` headers, sorted by Id.
    pub fn ground_truth_csv(&self, object: &str) -> Result<String, SimError> {
        let schema = self.schema(object).ok_or_else(|| SimError::UnknownObject(object.to_owned()))?;
        let fields = (0..schema.fields.len()).map(zoql::Column::Own).collect();
        self.truth(&schema, zoql::Query { fields, filter: None, order: Vec::new() })
    }

    /// What a lake fed with every completed job of this query should hold now: the live rows that pass its
    /// filter, its columns (API names), sorted by Id. A joined field is read as the related row stood when the
    /// last completed batch on the object returned the row (Zuora exports a row again only when the row itself
    /// changes, not when a row it joins does), or now for a row no batch returned yet.
    pub fn ground_truth_of(&self, query: &str) -> Result<String, SimError> {
        let object = zoql::from_object(query).ok_or_else(|| SimError::BadQuery(format!("no FROM object: {query}")))?;
        let schema = self.schema(&object).ok_or(SimError::UnknownObject(object))?;
        let parsed = zoql::parse(query, &schema, &self.schemas).map_err(SimError::BadQuery)?;
        self.truth(&schema, parsed)
    }

    fn truth(&self, schema: &Arc<ObjectSchema>, query: zoql::Query) -> Result<String, SimError> {
        let related = self.related(&query);
        let joins = query.fields.iter().any(|c| matches!(c, zoql::Column::Joined(_)));
        let snapshot = self.snapshot(schema);
        let joined_at = joins.then(|| Arc::new(self.last_returned(&snapshot)));
        let plan = BatchPlan {
            snapshot,
            query,
            deleted: None,
            window: Window::Full { upper: self.clock.now() + Duration::microseconds(1) },
            api_names: true,
            line_ending: "\n".to_owned(),
            related: Arc::new(related),
            joined_at,
        };
        let spec = FileSpec { plan: Arc::new(plan), skip: 0, take: u64::MAX, gzip: false };
        let body: Vec<u8> = crate::files::FileBody::new(spec).flat_map(|chunk| chunk.to_vec()).collect();
        let text = String::from_utf8_lossy(&body).into_owned();
        // Sort records by their first field (the Id), keeping quoted newlines inside their record.
        let mut records = split_records(&text);
        let header = if records.is_empty() { String::new() } else { records.remove(0) };
        records.sort();
        Ok(std::iter::once(header).chain(records).collect())
    }

    /// The batches on an object that completed (normally) by now.
    fn completed_batches(&self, object: &str) -> Vec<Arc<BatchPlan>> {
        let now = self.clock.now();
        let jobs = lock(&self.jobs);
        jobs.list
            .iter()
            .filter(|job| job.status(now) == "completed")
            .flat_map(|job| job.batches.iter())
            .filter(|batch| batch.outcome == Outcome::Normal && batch.plan.snapshot.schema.name == object)
            .map(|batch| batch.plan.clone())
            .collect()
    }

    /// For each row some completed batch returned alive, the instant the last such batch read it at.
    fn last_returned(&self, snapshot: &Snapshot) -> HashMap<u64, DateTime<Utc>> {
        let completed = self.completed_batches(snapshot.schema.name);
        let mut at = HashMap::new();
        for key in snapshot.keys() {
            let read = completed
                .iter()
                .filter(|plan| plan.classify(key).is_some_and(|(_, deleted)| !deleted))
                .map(|plan| plan.window.upper() - Duration::microseconds(1))
                .max();
            if let Some(read) = read {
                at.insert(key, read);
            }
        }
        at
    }

    /// Every row of an object deleted by now: its id, when it was created and deleted, and whether any job
    /// that completed returned it flagged deleted (a row created and deleted within one increment's interval is
    /// never returned: Zuora cannot export it).
    pub fn deleted_rows(&self, object: &str) -> Result<Vec<DeletedRow>, SimError> {
        let schema = self.schema(object).ok_or_else(|| SimError::UnknownObject(object.to_owned()))?;
        let snapshot = self.snapshot(&schema);
        let now = self.clock.now();
        let completed = self.completed_batches(schema.name);
        let mut rows = Vec::new();
        for key in snapshot.keys() {
            let Some(state) = snapshot.state_at(key, now) else { continue };
            let Some(deleted_at) = state.deleted_at else { continue };
            let mut id = Vec::new();
            snapshot.generator.id(schema.name, key, &mut id);
            let reported = completed.iter().any(|plan| plan.classify(key).is_some_and(|(_, deleted)| deleted));
            let id = String::from_utf8_lossy(&id).into_owned();
            rows.push(DeletedRow { id, created: state.created, deleted_at, reported });
        }
        Ok(rows)
    }

    // ---- jobs

    /// Submits a job (the body of `POST /v1/batch-query/`).
    pub fn submit(&self, body: &Value, idempotency_key: Option<&str>) -> Result<Value, ApiError> {
        if let Some(key) = idempotency_key {
            let jobs = lock(&self.jobs);
            if let Some(id) = jobs.idempotency.get(key) {
                let index = jobs.by_id[id];
                return Ok(self.job_json(&jobs.list[index], false));
            }
        }
        let now = self.clock.now();
        let settings = self.settings();
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let flag = |v: Option<&Value>| match v {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        let version = match text(body.get("version")).as_deref() {
            None => "1.0".to_owned(),
            Some("1" | "1.0") => "1.0".to_owned(),
            Some(v) => v.to_owned(),
        };
        let partner = text(body.get("partner")).filter(|s| !s.is_empty());
        let project = text(body.get("project")).filter(|s| !s.is_empty());
        let stateful = version != "1.0" && partner.is_some() && project.is_some();
        let session_key = (partner.clone().unwrap_or_default(), project.clone().unwrap_or_default());
        let format = text(body.get("format")).unwrap_or_else(|| "csv".to_owned()).to_ascii_uppercase();
        match format.as_str() {
            "CSV" | "GZIP" => {}
            // Documented but not simulated: the names of the files inside Zuora's zip are undocumented.
            "ZIP" => return Err(api_error("90005", "format ZIP is not supported by the simulator (use csv or gzip)")),
            // Outside the documented enum: Zuora answers such bodies as malformed (docs/zuora-aqua.md, calls).
            _ => return Err(api_error(MALFORMED, "Oops, request is malformed. Please check your request.")),
        }
        let mut jobs = lock(&self.jobs);
        let mut queries: Vec<Value> = body.get("queries").and_then(Value::as_array).cloned().unwrap_or_default();
        if queries.is_empty() && stateful {
            queries = jobs.sessions.get(&session_key).and_then(|s| s.last_queries.clone()).unwrap_or_default();
        }
        if queries.is_empty() {
            return Err(api_error("90016", "No queries in the AQuA input"));
        }
        if queries.len() > MAX_QUERIES {
            return Err(api_error("90004", format!("More than {MAX_QUERIES} queries in the AQuA input")));
        }
        let incremental_time = match body.get("incrementalTime") {
            Some(Value::String(s)) if stateful => Some(
                parse_incremental_time(s, self.config.data_center)
                    .ok_or_else(|| api_error("90015", format!("Invalid incremental timestamp {s}")))?,
            ),
            Some(Value::Number(n)) if stateful => Some(
                n.as_i64()
                    .and_then(DateTime::from_timestamp_millis)
                    .ok_or_else(|| api_error("90015", format!("Invalid incremental timestamp {n}")))?,
            ),
            _ => None,
        };
        let busy = jobs
            .list
            .iter()
            .filter(|j| j.stateful == stateful && matches!(j.status(now), "submitted" | "executing"))
            .count();
        if busy >= settings.max_concurrent_jobs {
            return Err(api_error("90028", "Too many concurrent jobs; please retry later"));
        }
        let offset = body.get("offset").and_then(Value::as_i64).unwrap_or(0).clamp(0, 3600);
        let upper = now - Duration::seconds(offset);
        let api_names = flag(body.get("useQueryLabels"));

        // Validate every query before touching the session.
        let mut parsed = Vec::with_capacity(queries.len());
        for query in &queries {
            let zoql_text = query.get("query").and_then(Value::as_str).unwrap_or_default().to_owned();
            let object = zoql::from_object(&zoql_text).unwrap_or_default();
            let schema = self.schema(&object).ok_or_else(|| {
                api_error(
                    "90005",
                    format!(
                        "There is a syntax error in one of the queries in the AQuA input: invalid object {object:?}"
                    ),
                )
            })?;
            let parsed_query = zoql::parse(&zoql_text, &schema, &self.schemas).map_err(|e| {
                api_error("90005", format!("There is a syntax error in one of the queries in the AQuA input: {e}"))
            })?;
            let deleted = query.get("deleted").filter(|d| d.is_object()).cloned();
            if let Some(d) = &deleted
                && !stateful
                && !flag(d.get("forceExport"))
            {
                return Err(api_error(
                    "90012",
                    "Deleted records can only be exported in stateful mode (or with forceExport)",
                ));
            }
            parsed.push((query, zoql_text, schema, parsed_query, deleted));
        }

        let mut batches = Vec::with_capacity(parsed.len());
        for (query, zoql_text, schema, parsed_query, deleted) in parsed {
            let name = text(query.get("name"));
            let session_query_key = name.clone().unwrap_or_else(|| schema.name.to_ascii_lowercase());
            let (window, full) = if !stateful {
                let include = deleted.as_ref().is_some_and(|d| flag(d.get("forceExport")));
                (Window::Stateless { upper, include_deleted: include }, true)
            } else if let Some(lower) = incremental_time {
                (Window::Incremental { lower, upper }, false)
            } else {
                let session = jobs.sessions.entry(session_key.clone()).or_default();
                let previous = session.queries.get(&session_query_key).cloned();
                session.queries.insert(
                    session_query_key,
                    SessionQuery { text: zoql_text.clone(), deleted: deleted.clone(), mark: upper },
                );
                match previous {
                    Some(p) if p.text == zoql_text && p.deleted == deleted => {
                        (Window::Incremental { lower: p.mark, upper }, false)
                    }
                    _ => (Window::Full { upper }, true),
                }
            };
            let mut outcome = Outcome::Normal;
            let column = deleted.as_ref().and_then(|d| d.get("column")).and_then(Value::as_str).map(str::to_owned);
            let deleted_column = match (&deleted, column) {
                (Some(_), Some(_)) if !schema.deleted_supported => {
                    outcome = Outcome::DeletedNotAllowed;
                    None
                }
                (Some(d), Some(column)) => Some(DeletedColumn {
                    header: format!("{}.{column}", schema.name),
                    numeric: d.get("format").and_then(Value::as_str).is_some_and(|f| f.eq_ignore_ascii_case("numeric")),
                }),
                _ => None,
            };
            if let Some(message) = lock(&self.abort_next).remove(&schema.name.to_ascii_lowercase()) {
                outcome = Outcome::Aborted(message);
            }
            let plan = BatchPlan {
                snapshot: self.snapshot(&schema),
                related: Arc::new(self.related(&parsed_query)),
                query: parsed_query,
                deleted: deleted_column,
                window,
                api_names,
                line_ending: settings.line_ending.clone(),
                joined_at: None,
            };
            batches.push(BatchEntry {
                batch_id: self.new_id(),
                name,
                query: zoql_text,
                batch_type: text(query.get("type")).unwrap_or_else(|| "zoqlexport".to_owned()),
                api_version: text(query.get("apiVersion")).unwrap_or_else(|| "91.0".to_owned()),
                deleted,
                full,
                outcome,
                plan: Arc::new(plan),
                record_count: None,
                file_ids: Vec::new(),
                segmented: stateful && full && settings.segment_rows.is_some(),
            });
        }
        let mut start_at = now + secs(settings.job_queue_secs);
        if stateful {
            let session = jobs.sessions.entry(session_key.clone()).or_default();
            if let Some(busy_until) = session.busy_until {
                start_at = start_at.max(busy_until);
            }
        }
        let end_at = start_at + secs(settings.job_execution_secs);
        if stateful {
            let session = jobs.sessions.entry(session_key).or_default();
            session.busy_until = Some(end_at);
            session.last_queries = Some(queries);
        }
        let job = JobEntry {
            id: self.new_id(),
            idempotency_key: idempotency_key.map(str::to_owned),
            name: text(body.get("name")).map(|n| n.chars().take(32).collect()),
            version,
            format,
            encrypted: text(body.get("encrypted")).unwrap_or_else(|| "none".to_owned()),
            partner,
            project,
            stateful,
            offset,
            incremental_time,
            notify_url: text(body.get("notifyUrl")),
            submitted_at: now,
            queue: secs(settings.job_queue_secs),
            execution: secs(settings.job_execution_secs),
            start_at,
            end_at,
            cancelled_at: None,
            batches,
        };
        let json = self.job_json(&job, false);
        let index = jobs.list.len();
        jobs.by_id.insert(job.id.clone(), index);
        if let Some(key) = idempotency_key {
            jobs.idempotency.insert(key.to_owned(), job.id.clone());
        }
        jobs.list.push(job);
        Ok(json)
    }

    /// Counts records and assigns files of a job that completed, once.
    fn finalize(&self, id: &str) {
        let now = self.clock.now();
        let pending: Vec<(usize, Arc<BatchPlan>)> = {
            let jobs = lock(&self.jobs);
            let Some(&index) = jobs.by_id.get(id) else { return };
            let job = &jobs.list[index];
            if !matches!(job.status(now), "completed" | "aborted") {
                return;
            }
            job.batches
                .iter()
                .enumerate()
                .filter(|(_, b)| b.outcome == Outcome::Normal && b.record_count.is_none())
                .map(|(i, b)| (i, b.plan.clone()))
                .collect()
        };
        // Counting reads every row: done without holding the lock.
        let counts: Vec<(usize, u64)> = pending.into_iter().map(|(i, plan)| (i, plan.count())).collect();
        let settings = self.settings();
        let mut jobs = lock(&self.jobs);
        let Some(&index) = jobs.by_id.get(id) else { return };
        let gzip = jobs.list[index].format == "GZIP";
        let job_end = jobs.list[index].end_at;
        let mut new_files = Vec::new();
        for (i, count) in counts {
            let batch = &mut jobs.list[index].batches[i];
            if batch.record_count.is_some() {
                continue;
            }
            batch.record_count = Some(count);
            let per_file = match settings.segment_rows {
                Some(n) if batch.segmented => n.max(1),
                _ => u64::MAX,
            };
            let files = if per_file == u64::MAX { 1 } else { count.div_ceil(per_file).max(1) };
            for segment in 0..files {
                let file_id = self.new_id();
                batch.file_ids.push(file_id.clone());
                let spec =
                    FileSpec { plan: batch.plan.clone(), skip: segment.saturating_mul(per_file), take: per_file, gzip };
                new_files.push((file_id, FileEntry { spec, job_end, size: None, stored: None }));
            }
        }
        jobs.files.extend(new_files);
    }

    /// A job's JSON, or `None` if unknown.
    pub fn job(&self, id: &str) -> Option<Value> {
        self.finalize(id);
        let jobs = lock(&self.jobs);
        let index = *jobs.by_id.get(id)?;
        Some(self.job_json(&jobs.list[index], true))
    }

    /// The last completed job of a session.
    pub fn last_completed(&self, partner: &str, project: &str) -> Option<Value> {
        let now = self.clock.now();
        let id = {
            let jobs = lock(&self.jobs);
            jobs.list
                .iter()
                .filter(|j| {
                    j.partner.as_deref() == Some(partner)
                        && j.project.as_deref() == Some(project)
                        && j.status(now) == "completed"
                })
                .max_by_key(|j| j.end_at)?
                .id
                .clone()
        };
        self.job(&id)
    }

    /// Cancels a job that has not finished.
    pub fn cancel(&self, id: &str) -> Result<Value, ApiError> {
        let now = self.clock.now();
        let mut jobs = lock(&self.jobs);
        let Some(&index) = jobs.by_id.get(id) else {
            return Err(api_error("90002", "Invalid job id"));
        };
        let job = &mut jobs.list[index];
        if !matches!(job.status(now), "submitted" | "executing") {
            return Err(api_error("90003", "Invalid Job Id for job cancellation"));
        }
        job.cancelled_at = Some(now);
        let json = self.job_json(job, true);
        if job.stateful {
            reschedule_after_cancel(&mut jobs, index, now);
        }
        Ok(json)
    }

    /// Every job, for the control API.
    pub fn jobs(&self) -> Vec<JobSummary> {
        let ids: Vec<String> = lock(&self.jobs).list.iter().map(|j| j.id.clone()).collect();
        for id in &ids {
            self.finalize(id);
        }
        let now = self.clock.now();
        lock(&self.jobs)
            .list
            .iter()
            .map(|j| JobSummary {
                id: j.id.clone(),
                status: j.status(now).to_owned(),
                partner: j.partner.clone(),
                project: j.project.clone(),
                submitted_at: j.submitted_at,
                idempotency_key: j.idempotency_key.clone(),
                batches: j
                    .batches
                    .iter()
                    .map(|b| BatchSummary {
                        name: b.name.clone(),
                        object: b.plan.snapshot.schema.name.to_owned(),
                        full: b.full,
                        record_count: b.record_count,
                        from: b.plan.window.lower(),
                        to: b.plan.window.upper(),
                    })
                    .collect(),
            })
            .collect()
    }

    fn job_json(&self, job: &JobEntry, read: bool) -> Value {
        let now = self.clock.now();
        // The submit response (and its idempotent replay) shows the job as accepted, whatever happened since.
        let status = if read { job.status(now) } else { "submitted" };
        let legacy = self.settings().legacy_json;
        let wall_clock = |t: DateTime<Utc>| match self.config.data_center {
            DataCenter::Us => t.with_timezone(&Los_Angeles).format("%Y-%m-%d %H:%M:%S").to_string(),
            DataCenter::Eu => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        };
        let batches: Vec<Value> = job
            .batches
            .iter()
            .map(|b| {
                let batch_status = match (status, &b.outcome) {
                    ("submitted" | "cancelled", _) => "pending",
                    ("executing", _) => "executing",
                    (_, Outcome::Normal) => "completed",
                    (_, Outcome::Aborted(_)) => "aborted",
                    (_, Outcome::DeletedNotAllowed) => "deleted_notallowed",
                };
                let count = if batch_status == "completed" { b.record_count.unwrap_or(0) } else { 0 };
                let mut batch = json!({
                    "batchId": b.batch_id, "name": b.name, "query": b.query, "batchType": b.batch_type,
                    "apiVersion": b.api_version, "status": batch_status, "localizedStatus": batch_status,
                    "recordCount": if legacy { json!(count.to_string()) } else { json!(count) },
                    "full": b.full,
                    "message": match &b.outcome { Outcome::Aborted(m) => m.clone(), _ => String::new() },
                });
                if b.name.is_none() {
                    batch.as_object_mut().map(|o| o.remove("name"));
                }
                if let Some(d) = &b.deleted {
                    batch["deleted"] = d.clone();
                }
                if batch_status == "completed" && read && !b.file_ids.is_empty() {
                    if b.segmented {
                        batch["segments"] = json!(b.file_ids);
                    } else {
                        batch["fileId"] = json!(b.file_ids[0]);
                    }
                }
                batch
            })
            .collect();
        let mut out = json!({
            "id": job.id, "status": status,
            "version": if legacy { json!(job.version.parse::<f64>().unwrap_or(1.0)) } else { json!(job.version) },
            "format": job.format, "encrypted": job.encrypted, "useLastCompletedJobQueries": false,
            "sourceData": "LIVE", "batches": batches,
        });
        let o = out.as_object_mut();
        if let Some(o) = o {
            if let Some(name) = &job.name {
                o.insert("name".into(), json!(name));
            }
            if let (Some(partner), Some(project)) = (&job.partner, &job.project) {
                o.insert("partner".into(), json!(partner));
                o.insert("project".into(), json!(project));
                o.insert("offset".into(), json!(job.offset));
            }
            if let Some(t) = job.incremental_time {
                let value = if legacy { json!(wall_clock(t)) } else { json!(t.timestamp_millis()) };
                o.insert("incrementalTime".into(), value);
            }
            if let Some(url) = &job.notify_url {
                o.insert("notifyUrl".into(), json!(url));
            }
            if read && now >= job.start_at {
                let start = if legacy {
                    wall_clock(job.start_at)
                } else {
                    job.start_at.format("%Y-%m-%dT%H:%M:%S+0000").to_string()
                };
                o.insert("startTime".into(), json!(start));
            }
        }
        out
    }

    // ---- files

    /// A file to send, or why not.
    pub fn download(&self, file_id: &str) -> Result<Download, DownloadError> {
        let settings = self.settings();
        let now = self.clock.now();
        let (spec, size, stored) = {
            let jobs = lock(&self.jobs);
            let file = jobs.files.get(file_id).ok_or(DownloadError::NotFound)?;
            if now > file.job_end + secs(settings.file_lifetime_hours * 3600.0) {
                return Err(DownloadError::NotFound);
            }
            (file.spec.clone(), file.size, file.stored.clone())
        };
        let needs_size = settings.content_length || settings.max_file_bytes.is_some();
        let size = match size {
            Some(size) => Some(size),
            None if needs_size => {
                let size: u64 = crate::files::FileBody::new(spec.clone()).map(|c| c.len() as u64).sum();
                if let Some(file) = lock(&self.jobs).files.get_mut(file_id) {
                    file.size = Some(size);
                }
                Some(size)
            }
            None => None,
        };
        if let (Some(size), Some(limit)) = (size, settings.max_file_bytes)
            && size > limit
        {
            return Err(DownloadError::TooLarge(limit));
        }
        Ok(Download { spec, size: if settings.content_length { size } else { None }, stored })
    }

    /// Writes a file's bytes to `path`, as Zuora keeps a finished job's files, and sends them from there from now
    /// on, so that a download costs no rendering (for benchmarks of the clients). Returns the file's size.
    pub fn store_file(&self, file_id: &str, path: &std::path::Path) -> Result<u64, String> {
        let spec = lock(&self.jobs).files.get(file_id).map(|f| f.spec.clone()).ok_or("no such file")?;
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| e.to_string())?);
        let mut size = 0u64;
        for chunk in crate::files::FileBody::new(spec) {
            std::io::Write::write_all(&mut out, &chunk).map_err(|e| e.to_string())?;
            size += chunk.len() as u64;
        }
        std::io::Write::flush(&mut out).map_err(|e| e.to_string())?;
        let mut jobs = lock(&self.jobs);
        let file = jobs.files.get_mut(file_id).ok_or("no such file")?;
        (file.size, file.stored) = (Some(size), Some(path.to_owned()));
        Ok(size)
    }
}

/// Reads `incrementalTime` (`yyyy-MM-dd HH:mm:ss`) as the data centre does: US data centres in
/// America/Los_Angeles (DST-aware), the EU in UTC. A wall-clock time skipped by the spring-forward gap does not
/// exist there and is refused; one repeated by the autumn fall-back reads as the first (daylight) instant.
pub fn parse_incremental_time(text: &str, data_center: DataCenter) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    match data_center {
        DataCenter::Eu => Some(naive.and_utc()),
        DataCenter::Us => match Los_Angeles.from_local_datetime(&naive) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
            LocalResult::None => None,
        },
    }
}

fn secs(seconds: f64) -> Duration {
    Duration::microseconds((seconds.max(0.0) * 1_000_000.0) as i64)
}

/// The jobs of a session queued behind a cancelled one no longer wait for its planned end: each starts when the
/// one before it finished (or now), its own queue time permitting, in arrival order as before.
fn reschedule_after_cancel(jobs: &mut Jobs, cancelled: usize, now: DateTime<Utc>) {
    let session = (jobs.list[cancelled].partner.clone(), jobs.list[cancelled].project.clone());
    let mut previous_end = now;
    for job in jobs.list.iter_mut().skip(cancelled + 1) {
        if !job.stateful || (job.partner.clone(), job.project.clone()) != session {
            continue;
        }
        if let Some(at) = job.cancelled_at {
            previous_end = previous_end.max(at);
            continue;
        }
        // Every later job of the session was waiting for the cancelled one, so none has started.
        job.start_at = (job.submitted_at + job.queue).max(previous_end);
        job.end_at = job.start_at + job.execution;
        previous_end = job.end_at;
    }
    if let (Some(partner), Some(project)) = session
        && let Some(s) = jobs.sessions.get_mut(&(partner, project))
    {
        s.busy_until = Some(previous_end);
    }
}

/// Splits CSV text into records (each with its line ending), respecting quotes.
fn split_records(text: &str) -> Vec<String> {
    let mut records = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\n' if !in_quotes => {
                records.push(text[start..=i].to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < text.len() {
        records.push(text[start..].to_owned());
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn incremental_time_is_pacific_in_the_us_across_daylight_saving_and_utc_in_the_eu() {
        // Daylight time (UTC-7): tap-zuora's documented conversion.
        assert_eq!(parse_incremental_time("2022-09-30 17:00:00", DataCenter::Us), Some(utc("2022-10-01T00:00:00Z")));
        // Standard time (UTC-8); Zuora's own example 1421865001000.
        assert_eq!(parse_incremental_time("2015-01-21 10:30:01", DataCenter::Us), Some(utc("2015-01-21T18:30:01Z")));
        assert_eq!(
            parse_incremental_time("2015-01-21 10:30:01", DataCenter::Us).unwrap().timestamp_millis(),
            1_421_865_001_000
        );
        assert_eq!(parse_incremental_time("2022-09-30 17:00:00", DataCenter::Eu), Some(utc("2022-09-30T17:00:00Z")));
        // 02:30 on the spring-forward day does not exist in Los Angeles.
        assert_eq!(parse_incremental_time("2022-03-13 02:30:00", DataCenter::Us), None);
        for bad in ["2022-09-30T17:00:00", "01/02/2022", "2022-09-30", ""] {
            assert_eq!(parse_incremental_time(bad, DataCenter::Us), None, "{bad}");
        }
    }

    #[test]
    fn records_split_outside_quotes_only() {
        assert_eq!(split_records("h\n\"a\nb\",1\nc,2\n"), ["h\n", "\"a\nb\",1\n", "c,2\n"]);
    }
}
