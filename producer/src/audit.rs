//! `producer audit`: proves the lake whole against Zuora, object by object, and mends what it finds.
//!
//! For each object a stateless job asks Zuora for `Id` and `UpdatedDate` of every row the object's query lets
//! through, and of the deleted rows Zuora still keeps (`forceExport`); the lake's side is its files merged as the
//! lake merges them ([`common::merge`]). A row is
//! - **missing** when Zuora has it live and the lake does not;
//! - **differing** when both have it and the `UpdatedDate`s differ;
//! - **extra** when the lake has it and Zuora does not (deleted within Zuora's 30 days of deleted rows, or gone
//!   without a trace: hard-deleted, or deleted longer ago);
//!
//! except rows that are `pending`: changed in Zuora at or after the end of the last increment the exporter
//! delivered (its published marks, whatever files the lake still holds: a lost file's rows are differences, not
//! pending), or changed in the lake at or after the audit job's start (Zuora's rows are as of then; a row created
//! and published since is not "gone").
//!
//! Zuora's file is used only when it is whole: as many records as the batch's `recordCount`, the last one ended.
//! With `repair`, missing and differing rows are asked for again by one backfill from the earliest of their
//! `UpdatedDate`s, and extra rows are deleted in the lake by a file of deletions published like any other file
//! (the deleted flag set, the Id, nothing else), ordered by the audit job's start; a repair that would delete more
//! than [`RepairLimits::max_delete_share`] of the lake's rows of the object deletes nothing unless forced.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use common::catalogue::ObjectSpec;
use common::clock::Clock;
use common::config::Config;
use common::csv_count::RecordCounter;
use common::marks::Marks;
use common::merge::{self, MergedTable};
use common::messages::{
    Checksum, CompletionMessage, ExportFrom, ExportRequest, FileSchema, JobKind, MESSAGE_VERSION, Window,
};
use common::queue::{OutgoingMessage, Queue};
use common::services::{CompletionQueues, Services};
use common::store::{ChecksumAlgorithm, ObjectStore};
use common::zoql::Select;
use common::zuora::{BatchQueryRequest, DataCenter, DeletedSpec, Phase, Query, ZuoraClient, ZuoraTime};
use futures::TryStreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long an audit job may take: Zuora kills a query after 3 hours.
const AUDIT_DEADLINE: Duration = Duration::from_secs(4 * 3600);

/// What the audit needs: Zuora, the lake's files, and the two queues a repair sends to.
pub struct Auditor {
    /// Zuora.
    pub zuora: ZuoraClient,
    /// The store the lake's files are in.
    pub store: Arc<dyn ObjectStore>,
    /// The published marks: what the exporter delivered.
    pub marks: Marks,
    /// Where a repair's backfill request goes.
    pub requests: Arc<dyn Queue>,
    /// Where a repair's file of deletions is announced.
    pub completions: CompletionQueues,
    /// The checksum of a published file's completion message.
    pub checksum: ChecksumAlgorithm,
    /// How often the audit job is polled.
    pub poll_every: Duration,
    /// How long it may take (Zuora kills a query after 3 hours).
    pub deadline: Duration,
    /// Where "now" comes from.
    pub clock: Clock,
}

/// A row the lake does not hold as Zuora does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The row's Id.
    pub id: String,
    /// What is wrong.
    pub problem: Problem,
    /// Zuora's `UpdatedDate`, as Zuora wrote it (empty when Zuora has no such row).
    pub zuora_updated: String,
    /// The lake's `UpdatedDate` (empty when the lake has no such row).
    pub lake_updated: String,
}

/// What is wrong with a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Problem {
    /// Live in Zuora, not in the lake.
    Missing,
    /// In both, with different `UpdatedDate`s.
    Differing,
    /// In the lake, deleted in Zuora (within its deleted-rows retention).
    Deleted,
    /// In the lake, unknown to Zuora: hard-deleted, or deleted longer ago than Zuora keeps deleted rows.
    Gone,
}

impl Problem {
    fn name(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Differing => "differing",
            Self::Deleted => "deleted in Zuora",
            Self::Gone => "gone from Zuora",
        }
    }
}

/// One object's audit.
#[derive(Debug, Clone)]
pub struct ObjectAudit {
    /// The object.
    pub object: String,
    /// Zuora's audit job, and when it started: Zuora's rows are as of then.
    pub job_id: String,
    /// See `job_id`.
    pub as_of: DateTime<Utc>,
    /// Live rows in Zuora.
    pub zuora_rows: usize,
    /// Rows in the merged lake.
    pub lake_rows: usize,
    /// The end of the latest increment delivered (its mark, or a file the lake holds): Zuora's changes from then
    /// on are not a difference yet.
    pub delivered_until: Option<DateTime<Utc>>,
    /// Rows changed since: in Zuora since `delivered_until`, or in the lake since `as_of`.
    pub pending: usize,
    /// Every difference, by Id.
    pub differences: Vec<Difference>,
}

impl ObjectAudit {
    /// True when the lake holds every row as Zuora does (pending changes aside).
    pub fn is_equal(&self) -> bool {
        self.differences.is_empty()
    }

    /// One line: the counts, and `equal` or what differs.
    pub fn summary(&self) -> String {
        let mut out = format!("{}: {} rows in Zuora, {} in the lake", self.object, self.zuora_rows, self.lake_rows);
        if self.pending > 0 {
            let since = self.delivered_until.map(|t| t.to_rfc3339()).unwrap_or_default();
            out.push_str(&format!(", {} changed since the last increment delivered ({since})", self.pending));
        }
        if self.is_equal() {
            out.push_str(": equal");
            return out;
        }
        let mut counts: BTreeMap<Problem, usize> = BTreeMap::new();
        for difference in &self.differences {
            *counts.entry(difference.problem).or_default() += 1;
        }
        let parts: Vec<String> = counts.iter().map(|(problem, n)| format!("{n} {}", problem.name())).collect();
        out.push_str(&format!(": DIFFERENT, {}", parts.join(", ")));
        out
    }

    /// The differences as CSV: `id,problem,zuora_updated,lake_updated`.
    pub fn differences_csv(&self) -> Vec<u8> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let _ = writer.write_record(["id", "problem", "zuora_updated", "lake_updated"]);
        for d in &self.differences {
            let _ = writer.write_record([&d.id, d.problem.name(), &d.zuora_updated, &d.lake_updated]);
        }
        writer.into_inner().unwrap_or_default()
    }
}

/// What a repair did.
#[derive(Debug, Clone, Default)]
pub struct Repaired {
    /// One line per thing done or left alone.
    pub done: Vec<String>,
    /// A deletion was more than [`RepairLimits`] allow, and nothing was deleted.
    pub held_back: bool,
}

/// A failed audit.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Zuora refused or failed a call.
    #[error("Zuora: {0}")]
    Zuora(#[from] common::zuora::ZuoraError),
    /// Zuora ran the audit job and it did not complete.
    #[error("{object}: Zuora's audit job {job_id} ended {status}: {message}")]
    JobFailed {
        /// The object.
        object: String,
        /// The job.
        job_id: String,
        /// Its status.
        status: String,
        /// Zuora's reason.
        message: String,
    },
    /// The lake or Zuora's file could not be read.
    #[error("{0}")]
    Read(String),
    /// Zuora's file is not whole: nothing is compared or repaired from it.
    #[error(
        "{object}: Zuora's audit job {job_id} file is not whole ({reason}): nothing compared, nothing repaired; \
         run the audit again"
    )]
    NotWhole {
        /// The object.
        object: String,
        /// The job.
        job_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A repair could not be sent or published.
    #[error("{0}")]
    Repair(String),
}

/// Zuora's rows of an object: live ones and deleted ones, `UpdatedDate` by Id.
struct ZuoraRows {
    job_id: String,
    as_of: DateTime<Utc>,
    /// The tenant's data centre: the zone of a wall-clock `UpdatedDate`.
    data_center: DataCenter,
    live: BTreeMap<String, String>,
    deleted: BTreeMap<String, String>,
}

/// The audit's query of an object: `Id` and `UpdatedDate` from the object's own `FROM` and `WHERE`, so that a
/// filtered object is compared on the rows its filter lets through.
pub fn audit_query(object: &ObjectSpec) -> String {
    match Select::parse(&object.query) {
        Some(select) => select.with_columns("Id, UpdatedDate"),
        None => format!("SELECT Id, UpdatedDate FROM {}", object.name),
    }
}

/// How much one repair may do without `--force`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RepairLimits {
    /// The largest share of the lake's rows of an object one repair deletes (`0.01`: 1%); more, and it deletes
    /// nothing and says what it would have deleted.
    pub max_delete_share: f64,
    /// Delete whatever the share.
    pub force: bool,
}

impl Default for RepairLimits {
    fn default() -> Self {
        Self { max_delete_share: 0.01, force: false }
    }
}

impl Auditor {
    /// The auditor of a configuration: its Zuora, store and queues; polls as the consumers do.
    pub fn from_config(config: &Config, services: &Services) -> Result<Self, common::zuora::ZuoraError> {
        Ok(Self {
            zuora: ZuoraClient::new(config.zuora.clone())?,
            store: services.store.clone(),
            marks: Marks::at(services.store.clone(), &config.ledger.bucket, &config.ledger.prefix),
            requests: services.queues.requests.clone(),
            completions: services.queues.completions(),
            checksum: config.consumer.checksum,
            poll_every: Duration::from_secs(config.consumer.poll_delay_secs.max(1)),
            deadline: AUDIT_DEADLINE,
            clock: Clock::System,
        })
    }

    /// Audits one object.
    pub async fn audit(&self, object: &ObjectSpec) -> Result<ObjectAudit, AuditError> {
        let zuora = self.zuora_rows(object).await?;
        let published = merge::completions_from_metadata(&*self.store, &[object])
            .await
            .map_err(|e| AuditError::Read(e.to_string()))?;
        let lake =
            merge::merge_object(&*self.store, object, &published).await.map_err(|e| AuditError::Read(e.to_string()))?;
        let increments = published.iter().filter(|c| matches!(c.kind, Some(JobKind::Increment) | None));
        let in_files = increments.map(|c| c.window.to).max();
        let marked = self.marks.latest_increment(&object.name).await.map_err(|e| AuditError::Read(e.to_string()))?;
        let delivered_until = in_files.max(marked.map(|mark| mark.data_until()));
        Ok(compare(object, &zuora, &lake, delivered_until))
    }

    /// Mends what `audit` found: a backfill request for the missing and differing rows, a published file of
    /// deletions for the extra ones. A repair that would delete more than `limits` allow does nothing at all and
    /// says what it would have deleted. Returns what it did, one line each.
    pub async fn repair(
        &self,
        object: &ObjectSpec,
        audit: &ObjectAudit,
        limits: RepairLimits,
    ) -> Result<Repaired, AuditError> {
        let extra: Vec<&str> = audit
            .differences
            .iter()
            .filter(|d| matches!(d.problem, Problem::Deleted | Problem::Gone))
            .map(|d| d.id.as_str())
            .collect();
        let share = extra.len() as f64 / audit.lake_rows.max(1) as f64;
        if !extra.is_empty() && share > limits.max_delete_share && !limits.force {
            let more = extra.len().saturating_sub(20);
            let listed = extra[..extra.len() - more].join(", ")
                + &if more > 0 { format!(" and {more} more") } else { String::new() };
            let line = format!(
                "{}: repaired nothing: it would delete {} of the lake's {} rows ({:.2}%), more than the {:.2}% a \
                 repair deletes unasked. Check them (--out writes every row), then repair with --force: {listed}",
                object.name,
                extra.len(),
                audit.lake_rows,
                share * 100.0,
                limits.max_delete_share * 100.0,
            );
            return Ok(Repaired { done: vec![line], held_back: true });
        }
        let mut done = Vec::new();
        done.extend(self.request_backfill(object, audit).await?);
        if !extra.is_empty() {
            match &object.deleted_column {
                Some(deleted) => done.push(self.publish_deletions(object, deleted, audit, &extra).await?),
                None => done.push(format!(
                    "{}: {} rows to delete left alone: the object exports no deleted rows, so the lake has no way \
                     to be told (export_deleted = false)",
                    object.name,
                    extra.len()
                )),
            }
        }
        Ok(Repaired { done, held_back: false })
    }

    /// Asks for the missing and differing rows again: one backfill from the earliest of their `UpdatedDate`s.
    async fn request_backfill(&self, object: &ObjectSpec, audit: &ObjectAudit) -> Result<Option<String>, AuditError> {
        let stale = audit.differences.iter().filter(|d| matches!(d.problem, Problem::Missing | Problem::Differing));
        let data_center = self.zuora.config().data_center;
        let Some(from) = stale.filter_map(|d| instant(&d.zuora_updated, data_center)).min() else {
            return Ok(None);
        };
        let request_id = format!("audit-{}-{}", object.name, audit.job_id);
        let request = ExportRequest {
            version: MESSAGE_VERSION,
            export_from_date: ExportFrom::Instant(from),
            objects: Some(vec![object.name.clone()]),
            full_export: false,
            request_id: Some(request_id.clone()),
            window: None,
        };
        let body = serde_json::to_string(&request).map_err(|e| AuditError::Repair(e.to_string()))?;
        self.requests.send(OutgoingMessage::new(body)).await.map_err(|e| AuditError::Repair(e.to_string()))?;
        Ok(Some(format!("{}: requested {request_id}, changes since {}", object.name, from.to_rfc3339())))
    }

    /// Submits the audit job, waits for it, and reads its file(s).
    async fn zuora_rows(&self, object: &ObjectSpec) -> Result<ZuoraRows, AuditError> {
        let now = self.clock.now();
        let name = format!("zle-audit-{}-{}", object.name, now.format("%Y%m%dT%H%M%S%.3fZ"));
        let deleted = object.to_query().deleted.map(|d| DeletedSpec { force_export: Some(true), ..d });
        let query = Query::export(&object.name, &audit_query(object), deleted);
        let mut request = BatchQueryRequest::stateful(&name, "", "", vec![query]);
        (request.partner, request.project) = (None, None);
        let submitted = self.zuora.submit(&request, &name).await?;
        let job = self.zuora.wait_for_job(&submitted.id, self.poll_every, self.deadline).await?;
        let batch = job.batches.iter().find(|b| b.name.as_deref() == Some(object.name.as_str()));
        let failed = |message: Option<&str>| AuditError::JobFailed {
            object: object.name.clone(),
            job_id: job.id.clone(),
            status: job.status.to_string(),
            message: message.unwrap_or("no reason given").to_owned(),
        };
        let Some(batch) = batch.filter(|_| job.status.phase() == Phase::Succeeded) else {
            let message = job.batches.iter().find_map(|b| b.message.as_deref());
            return Err(failed(message));
        };
        let data_center = self.zuora.config().data_center;
        let as_of = job.start_time.as_ref().and_then(|t| t.to_utc(data_center)).unwrap_or(now);
        let (id, updated) = (merge::column(object, "Id"), merge::column(object, "UpdatedDate"));
        let flag = object.deleted_column.as_deref().map(|d| merge::column(object, d));
        let mut rows =
            ZuoraRows { job_id: job.id.clone(), as_of, data_center, live: BTreeMap::new(), deleted: BTreeMap::new() };
        let not_whole =
            |reason: String| AuditError::NotWhole { object: object.name.clone(), job_id: job.id.clone(), reason };
        let Some(expected) = batch.record_count else {
            return Err(not_whole("Zuora gave no recordCount to verify against".to_owned()));
        };
        let mut read = 0u64;
        for file_id in batch.file_ids() {
            let stream = self.zuora.download(file_id).await?;
            let chunks: Vec<Bytes> = stream.try_collect().await?;
            // Whole as the consumer proves a file whole: its records counted, its last one ended.
            let mut counter = RecordCounter::new();
            chunks.iter().for_each(|chunk| counter.feed(chunk));
            if !counter.ends_with_terminator() {
                let cut = if counter.ends_inside_quotes() { "inside a quoted field" } else { "inside its last record" };
                return Err(not_whole(format!("file {file_id} ends {cut}")));
            }
            read += counter.data_records();
            let csv = chunks.concat();
            let mut reader = csv::Reader::from_reader(csv.as_slice());
            let header = reader.headers().map_err(|e| AuditError::Read(format!("{file_id}: {e}")))?.clone();
            let at = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
            let id_at = at(&id).ok_or_else(|| AuditError::Read(format!("{file_id}: no column {id}")))?;
            let (updated_at, flag_at) = (at(&updated), flag.as_deref().and_then(at));
            for record in reader.records() {
                let record = record.map_err(|e| AuditError::Read(format!("{file_id}: {e}")))?;
                let value = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or_default().to_owned();
                let deleted = matches!(value(flag_at).as_str(), "true" | "1");
                let side = if deleted { &mut rows.deleted } else { &mut rows.live };
                side.insert(value(Some(id_at)), value(updated_at));
            }
        }
        if read != expected {
            return Err(not_whole(format!("{read} records read, Zuora's recordCount is {expected}")));
        }
        Ok(rows)
    }

    /// Publishes the deletion of `ids` as a file of the object, as the consumer publishes one: the CSV, its
    /// metadata JSON, then the completion message.
    async fn publish_deletions(
        &self,
        object: &ObjectSpec,
        deleted_column: &str,
        audit: &ObjectAudit,
        ids: &[&str],
    ) -> Result<String, AuditError> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let fail = |e: &dyn std::fmt::Display| AuditError::Repair(format!("{}: {e}", object.name));
        writer
            .write_record([merge::column(object, deleted_column), merge::column(object, "Id")])
            .map_err(|e| fail(&e))?;
        for id in ids {
            writer.write_record(["true", id]).map_err(|e| fail(&e))?;
        }
        let body = Bytes::from(writer.into_inner().map_err(|e| fail(&e))?);
        let batch_id = format!("audit-{}", audit.job_id);
        let key = object.target.key_for(&object.name, audit.as_of.date_naive(), &audit.job_id, &batch_id, 0);
        let bucket = &object.target.bucket;
        let completion = CompletionMessage {
            version: MESSAGE_VERSION,
            job_id: audit.job_id.clone(),
            batch_id,
            file_id: String::new(),
            object: object.name.clone(),
            segment: 0,
            segments: 1,
            bucket: bucket.clone(),
            key: key.clone(),
            metadata_key: object.target.metadata_key(&key),
            record_count: ids.len() as u64,
            bytes: body.len() as u64,
            full: false,
            window: Window { from: audit.delivered_until, to: audit.as_of },
            executed_at: audit.as_of,
            checksum: Checksum {
                algorithm: self.checksum.name().to_owned(),
                value: self.checksum.encode(self.checksum.of(std::slice::from_ref(&body))),
            },
            compression: "none".to_owned(),
            kind: Some(JobKind::Backfill),
            schema: Some(FileSchema::of_deletions(
                merge::column(object, "Id"),
                merge::column(object, deleted_column),
                self.zuora.config().data_center.zone_name(),
            )),
        };
        self.store.put(bucket, &key, body).await.map_err(|e| fail(&e))?;
        let metadata = completion.metadata_json(self.clock.now());
        self.store.put(bucket, &completion.metadata_key, metadata.into()).await.map_err(|e| fail(&e))?;
        self.completions.announce(&completion).await.map_err(|e| fail(&e))?;
        Ok(format!("{}: published the deletion of {} rows at s3://{bucket}/{key}", object.name, ids.len()))
    }
}

/// An `UpdatedDate` as Zuora writes it, as an instant (a wall-clock time read in the tenant's zone).
fn instant(text: &str, data_center: DataCenter) -> Option<DateTime<Utc>> {
    ZuoraTime::parse(text)?.to_utc(data_center)
}

/// Zuora's rows against the lake's merged table.
fn compare(
    object: &ObjectSpec,
    zuora: &ZuoraRows,
    lake: &MergedTable,
    delivered_until: Option<DateTime<Utc>>,
) -> ObjectAudit {
    let updated_column = merge::column(object, "UpdatedDate");
    let lake_updated = |row: &BTreeMap<String, String>| {
        row.iter().find(|(k, _)| k.eq_ignore_ascii_case(&updated_column)).map(|(_, v)| v.clone())
    };
    let instant = |text: &str| instant(text, zuora.data_center);
    // The same instant written either way, or the same text.
    let same_time = |a: &str, b: &str| a == b || instant(a).is_some_and(|a| Some(a) == instant(b));
    let at_or_after = |updated: &str, from: DateTime<Utc>| instant(updated).is_some_and(|at| at >= from);
    // Not delivered yet: changed in Zuora since the last increment delivered.
    let undelivered = |updated: &str| delivered_until.is_some_and(|until| at_or_after(updated, until));
    // Newer than Zuora's rows: changed in the lake since the audit job started.
    let newer = |lake_updated: Option<&String>| lake_updated.is_some_and(|updated| at_or_after(updated, zuora.as_of));
    let mut audit = ObjectAudit {
        object: object.name.clone(),
        job_id: zuora.job_id.clone(),
        as_of: zuora.as_of,
        zuora_rows: zuora.live.len(),
        lake_rows: lake.rows.len(),
        delivered_until,
        pending: 0,
        differences: Vec::new(),
    };
    let difference = |id: &str, problem, zuora_updated: &str, lake_updated: Option<String>| Difference {
        id: id.to_owned(),
        problem,
        zuora_updated: zuora_updated.to_owned(),
        lake_updated: lake_updated.unwrap_or_default(),
    };
    for (id, updated) in &zuora.live {
        let ours = lake.rows.get(id).map(lake_updated);
        let problem = match &ours {
            None => Problem::Missing,
            // A lake without the column is compared on Ids alone.
            Some(None) => continue,
            Some(Some(ours)) if same_time(ours, updated) => continue,
            Some(Some(_)) => Problem::Differing,
        };
        let ours = ours.flatten();
        if undelivered(updated) || newer(ours.as_ref()) {
            audit.pending += 1;
        } else {
            audit.differences.push(difference(id, problem, updated, ours));
        }
    }
    for (id, row) in &lake.rows {
        if zuora.live.contains_key(id) {
            continue;
        }
        if newer(lake_updated(row).as_ref()) {
            audit.pending += 1;
            continue;
        }
        let (problem, zuora_updated) = match zuora.deleted.get(id) {
            Some(updated) => (Problem::Deleted, updated.as_str()),
            None => (Problem::Gone, ""),
        };
        audit.differences.push(difference(id, problem, zuora_updated, lake_updated(row)));
    }
    audit
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::catalogue::Catalogue;

    fn object(name: &str) -> ObjectSpec {
        Catalogue::builtin().objects.into_iter().find(|o| o.name == name).unwrap()
    }

    fn lake(rows: &[(&str, &str)]) -> MergedTable {
        let row = |updated: &str| BTreeMap::from([("Account.UpdatedDate".to_owned(), updated.to_owned())]);
        MergedTable { rows: rows.iter().map(|(id, updated)| (id.to_string(), row(updated))).collect() }
    }

    fn zuora(live: &[(&str, &str)], deleted: &[(&str, &str)]) -> ZuoraRows {
        let map = |rows: &[(&str, &str)]| rows.iter().map(|(i, u)| (i.to_string(), u.to_string())).collect();
        let data_center = DataCenter::Us;
        ZuoraRows { job_id: "j".into(), as_of: Utc::now(), data_center, live: map(live), deleted: map(deleted) }
    }

    #[test]
    fn the_audit_query_keeps_the_objects_from_and_where() {
        assert_eq!(audit_query(&object("Account")), "SELECT Id, UpdatedDate FROM Account");
        let old = Catalogue::named("old-export").unwrap();
        let item = old.objects.iter().find(|o| o.name == "InvoiceItem").unwrap();
        assert!(audit_query(item).starts_with("SELECT Id, UpdatedDate FROM InvoiceItem WHERE (CreatedDate >="));
        // A query written over several lines keeps its WHERE: without it every row outside the filter would be
        // "missing" for ever.
        let mut multi_line = object("Account");
        multi_line.query = "SELECT\n  Id,\n  Name\nFROM Account\nWHERE\n  Status = 'Active'\n".into();
        assert_eq!(audit_query(&multi_line), "SELECT Id, UpdatedDate FROM Account WHERE Status = 'Active'");
    }

    #[test]
    fn rows_the_lake_changed_since_zuoras_rows_were_taken_are_pending_not_gone_or_differing() {
        let t = |h: u32| format!("2026-11-24T{h:02}:00:00+0000");
        let mut zuora = zuora(&[("same", &t(1)), ("changed-since", &t(2))], &[]);
        zuora.as_of = "2026-11-24T10:00:00Z".parse().unwrap();
        // Created and published after the audit job started, and changed then: Zuora's rows predate both.
        let lake = lake(&[("same", &t(1)), ("changed-since", &t(11)), ("created-since", &t(10))]);
        let audit = compare(&object("Account"), &zuora, &lake, None);
        assert!(audit.is_equal(), "{:?}", audit.differences);
        assert_eq!(audit.pending, 2);
        // A row the lake has from before the job started and Zuora does not is gone.
        let lake = self::lake(&[("same", &t(1)), ("changed-since", &t(2)), ("gone", &t(9))]);
        let found = compare(&object("Account"), &zuora, &lake, None).differences;
        assert_eq!(found.iter().map(|d| (d.id.as_str(), d.problem)).collect::<Vec<_>>(), [("gone", Problem::Gone)]);
    }

    #[test]
    fn rows_are_missing_differing_deleted_or_gone_and_changes_since_the_last_increment_are_pending() {
        let t = |h: u32| format!("2026-11-24T{h:02}:00:00+0000");
        let until = Some("2026-11-24T06:00:00Z".parse().unwrap());
        let zuora = zuora(
            &[("same", &t(1)), ("missing", &t(2)), ("older", &t(3)), ("new", &t(7)), ("changed", &t(8))],
            &[("deleted", &t(4))],
        );
        let lake = lake(&[
            ("same", "2026-11-24T01:00:00Z"),
            ("older", &t(1)),
            ("changed", &t(5)),
            ("deleted", &t(1)),
            ("gone", &t(1)),
        ]);
        let audit = compare(&object("Account"), &zuora, &lake, until);
        let found: Vec<(&str, Problem)> = audit.differences.iter().map(|d| (d.id.as_str(), d.problem)).collect();
        assert_eq!(
            found,
            [
                ("missing", Problem::Missing),
                ("older", Problem::Differing),
                ("deleted", Problem::Deleted),
                ("gone", Problem::Gone)
            ]
        );
        assert_eq!(audit.pending, 2, "new and changed: changed after the lake's last increment");
        assert!(audit.summary().ends_with("DIFFERENT, 1 missing, 1 differing, 1 deleted in Zuora, 1 gone from Zuora"));
        let csv = String::from_utf8(audit.differences_csv()).unwrap();
        assert!(csv.starts_with("id,problem,zuora_updated,lake_updated\nmissing,missing,2026-11-24T02:00:00+0000,\n"));

        let equal = compare(&object("Account"), &zuora, &lake, None);
        assert_eq!(equal.pending, 0, "without an increment, nothing is pending");
        // A wall-clock `UpdatedDate` is read in the tenant's zone: 01:00 in a US data centre is 09:00 UTC.
        let wall_clock = self::zuora(&[("same", "2026-11-24 01:00:00")], &[]);
        let nine = self::lake(&[("same", &t(9))]);
        assert!(compare(&object("Account"), &wall_clock, &nine, until).summary().ends_with(": equal"));
        let whole = self::lake(&[("same", &t(1))]);
        let only = self::zuora(&[("same", &t(1))], &[]);
        assert!(compare(&object("Account"), &only, &whole, until).summary().ends_with(": equal"));
    }
}
