//! Jobs and stateful sessions: submission (validated whole before the session moves), scheduling one job at a
//! time per session, status, the last completed job, cancellation.

use super::request::{QueryRequest, SubmitRequest};
use super::*;

impl Sim {
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
        let mut request = SubmitRequest::parse(body)?;
        let stateful = request.stateful();
        let session_key = request.session_key();
        let mut jobs = lock(&self.jobs);
        let mut queries = std::mem::take(&mut request.queries);
        if queries.is_empty() && stateful {
            queries = jobs.sessions.get(&session_key).and_then(|s| s.last_queries.clone()).unwrap_or_default();
        }
        if queries.is_empty() {
            return Err(api_error("90016", "No queries in the AQuA input"));
        }
        if queries.len() > MAX_QUERIES {
            return Err(api_error("90004", format!("More than {MAX_QUERIES} queries in the AQuA input")));
        }
        let incremental_time = match &request.incremental_time {
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
        // Zuora records a job's "Transaction Start Date": the job reads the data as of when it starts (after its
        // queue, and after the session's previous job), and the session's next increment continues from there.
        let mut start_at = now + secs(settings.job_queue_secs);
        if stateful && let Some(busy_until) = jobs.sessions.get(&session_key).and_then(|s| s.busy_until) {
            start_at = start_at.max(busy_until);
        }
        let upper = start_at - Duration::seconds(request.offset);

        // Validate every query before touching the session.
        let mut parsed = Vec::with_capacity(queries.len());
        for query in queries.iter().map(QueryRequest::parse) {
            let zoql_text = query.text.clone();
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
            let deleted = query.deleted.clone();
            if deleted.is_some() && !stateful && !query.force_export {
                return Err(api_error(
                    "90012",
                    "Deleted records can only be exported in stateful mode (or with forceExport)",
                ));
            }
            parsed.push((query, zoql_text, schema, parsed_query, deleted));
        }

        let purged_before = upper - secs(settings.deleted_retention_days * 86_400.0);
        // A session no job used for `session_reset_idle_days` starts again: every query's next job is a full load.
        if stateful
            && let Some(session) = jobs.sessions.get_mut(&session_key)
            && session
                .busy_until
                .is_some_and(|last| start_at - last > secs(settings.session_reset_idle_days * 86_400.0))
        {
            session.queries.clear();
        }
        let mut batches = Vec::with_capacity(parsed.len());
        for (query, zoql_text, schema, parsed_query, deleted) in parsed {
            let name = query.name.clone();
            let session_query_key = name.clone().unwrap_or_else(|| schema.name.to_ascii_lowercase());
            let (window, full) = if !stateful {
                (Window::Stateless { upper, include_deleted: query.force_export, purged_before }, true)
            } else if let Some(lower) = incremental_time {
                (Window::Incremental { lower, upper, purged_before }, false)
            } else {
                let session = jobs.sessions.entry(session_key.clone()).or_default();
                let previous = session.queries.get(&session_query_key).cloned();
                session.queries.insert(
                    session_query_key,
                    SessionQuery { text: zoql_text.clone(), deleted: deleted.clone(), mark: upper },
                );
                match previous {
                    Some(p) if p.text == zoql_text && p.deleted == deleted => {
                        (Window::Incremental { lower: p.mark, upper, purged_before }, false)
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
                api_names: request.api_names,
                line_ending: settings.line_ending.clone(),
                joined_at: None,
            };
            if outcome == Outcome::Normal && settings.query_secs_per_record > 0.0 {
                let runs_for = plan.count() as f64 * settings.query_secs_per_record;
                if runs_for > settings.query_time_limit_secs {
                    outcome = Outcome::Aborted(format!(
                        "Error 90029: the query ran past the time limit of {} seconds and was stopped",
                        settings.query_time_limit_secs
                    ));
                }
            }
            batches.push(BatchEntry {
                batch_id: self.new_id(),
                name,
                query: zoql_text,
                batch_type: query.batch_type.clone(),
                api_version: query.api_version.clone(),
                deleted,
                full,
                outcome,
                plan: Arc::new(plan),
                record_count: None,
                file_ids: Vec::new(),
                segmented: stateful && full && settings.segment_rows.is_some(),
            });
        }
        let records: u64 = match settings.execution_secs_per_record > 0.0 {
            true => batches.iter().map(|b| b.plan.count()).sum(),
            false => 0,
        };
        let end_at = start_at + secs(settings.job_execution_secs + records as f64 * settings.execution_secs_per_record);
        if stateful {
            let session = jobs.sessions.entry(session_key).or_default();
            session.busy_until = Some(end_at);
            session.last_queries = Some(queries);
        }
        let job = JobEntry {
            id: self.new_id(),
            idempotency_key: idempotency_key.map(str::to_owned),
            name: request.name,
            version: request.version,
            format: request.format,
            encrypted: request.encrypted,
            partner: request.partner,
            project: request.project,
            stateful,
            offset: request.offset,
            incremental_time,
            notify_url: request.notify_url,
            notified: false,
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
        let notifies = job.notify_url.is_some();
        jobs.list.push(job);
        drop(jobs);
        if notifies {
            self.wake_notifier();
        }
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
        // The job has run: it read the rows as of its start, changes made while it waited in the queue included.
        // Counting reads every row: done without holding the lock.
        let counts: Vec<(usize, Arc<BatchPlan>, u64)> = pending
            .into_iter()
            .map(|(i, plan)| {
                let plan = Arc::new(self.as_run(&plan));
                let n = plan.count();
                (i, plan, n)
            })
            .collect();
        let settings = self.settings();
        let mut jobs = lock(&self.jobs);
        let Some(&index) = jobs.by_id.get(id) else { return };
        let gzip = jobs.list[index].format == "GZIP";
        let job_end = jobs.list[index].end_at;
        let mut new_files = Vec::new();
        for (i, plan, count) in counts {
            let batch = &mut jobs.list[index].batches[i];
            if batch.record_count.is_some() {
                continue;
            }
            batch.plan = plan;
            batch.record_count = Some(count);
            let per_file = match settings.segment_rows {
                Some(n) if batch.segmented => n.max(1),
                _ => u64::MAX,
            };
            let files = if per_file == u64::MAX { 1 } else { count.div_ceil(per_file).max(1) };
            for segment in 0..files {
                let file_id = self.new_id();
                batch.file_ids.push(file_id.clone());
                let spec = FileSpec {
                    plan: batch.plan.clone(),
                    skip: segment.saturating_mul(per_file),
                    take: per_file.min(count),
                    gzip,
                };
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
                ends_at: j.end_at,
                idempotency_key: j.idempotency_key.clone(),
                incremental_time: j.incremental_time,
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
}
