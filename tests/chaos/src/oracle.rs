//! The oracle: what must hold after every seed, whatever was injected.
//! - (a) each object's lake, merged from the completions the lake received (duplicates included, as a lake that
//!   does not deduplicate would apply them), equals Zuora's live rows;
//! - (b) every metadata file's data file exists and its RFC 4180 record count equals the metadata's `recordCount`;
//! - (c) once the services have stopped, no multipart upload is left open, except by a process that was killed
//!   (the lifecycle rule's share);
//! - (d) every queue is empty and every dead-letter queue too, once its messages were redriven after the faults,
//!   but for the forged job messages the plan sent, each of which is in the jobs DLQ, refused by the ledger check
//!   (a forgery acted on would have left none there);
//! - (e) the completions received describe exactly the published files: each file announced at least once, each
//!   announcement equal to its metadata, duplicates counted;
//! - (f) nothing is stuck: the drain ended within its bound;
//! - (g) each object's legacy fixed key holds a copy of its latest published increment of the session (the latest
//!   window end, then the latest export of it; Zuora's own record says which jobs were the session's increments;
//!   a segmented one's segments joined in order under one header),
//!   and the old layout's metadata beside it describes that file, however many consumers published at once; the
//!   fixed key is a plain CSV, never compressed bytes;
//! - (h) Zuora ran no more jobs than the requests sent can cause: each stateful request (daily, subset, submit,
//!   backfill) at most `1 + MAX_REQUESTS_AGAIN` stateful jobs; each object at most `1 + MAX_REQUESTS_AGAIN` jobs a
//!   window for its full exports, exact windows and first loads asked again (a full export of an object that had
//!   neither is one job too many);
//! - (i) the table writer, given the tables queue's completions (its duplicates included) once the services have
//!   stopped, applies every one (none refused, none left) and leaves each object's Delta table with every live row
//!   of Zuora's, Id by Id (docs/tables.md). Rows the table holds beyond Zuora's are counted, not failed, while the
//!   writer has a known defect: a row deleted by a newer file comes back when an older file that has it is applied
//!   after it (docs/tables.md, "Applying a file").

use crate::world::{Drain, World};
use common::merge;
use common::messages::{CompletionMessage, MAX_REQUESTS_AGAIN};
use local_export::lake;
use std::collections::BTreeMap;
use table_writer::service::{Settled, TableWriter};

/// What the oracle found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Every check that failed, one line each.
    pub failures: Vec<String>,
    /// Published files (metadata JSON in the store).
    pub files: usize,
    /// Completion messages received.
    pub completions: usize,
    /// Completion messages received more than once for one file (the extra copies).
    pub duplicates: usize,
    /// Uploads left open by killed processes.
    pub uploads_left_by_kills: usize,
    /// Lake rows Zuora deleted but could never report deleted (forgiven by (a)).
    pub unreportable_deletions: usize,
    /// Forged job messages found refused in the jobs DLQ.
    pub forgeries_refused: usize,
}

/// Runs every check.
pub async fn judge(world: &World, drain: Drain) -> anyhow::Result<Verdict> {
    let mut verdict = Verdict::default();
    let fail = |verdict: &mut Verdict, text: String| verdict.failures.push(text);
    if !drain.settled {
        let mut depths = Vec::new();
        for queue in [&world.queues.requests, &world.queues.jobs, &world.queues.lake] {
            depths.push(format!("{} {:?}", queue.name(), queue.depth().await?));
        }
        fail(
            &mut verdict,
            format!("(f) not settled {} s after the faults stopped: {}", drain.took.as_secs(), depths.join(", ")),
        );
    }

    let received: Vec<CompletionMessage> = world.received.lock().unwrap_or_else(|e| e.into_inner()).clone();
    verdict.completions = received.len();
    let objects: Vec<_> = world.catalogue.objects.iter().collect();
    let published = merge::completions_from_metadata(&*world.store, &objects).await?;
    verdict.files = published.len();

    // (b)
    for file in &published {
        let object = objects.iter().find(|o| o.name == file.object);
        let csv = match merge::file_csv(&*world.store, file).await {
            Ok(csv) => csv,
            Err(e) => {
                fail(&mut verdict, format!("(b) {}: {e:#}", file.metadata_key));
                continue;
            }
        };
        let deleted = object.and_then(|o| o.deleted_column.as_deref().map(|d| merge::column(o, d)));
        match lake::count_records(&csv, deleted.as_deref()) {
            Ok((records, _)) if records == file.record_count => {}
            Ok((records, _)) => {
                fail(&mut verdict, format!("(b) {}: {records} records, metadata says {}", file.key, file.record_count))
            }
            Err(e) => fail(&mut verdict, format!("(b) {}: {e:#}", file.key)),
        }
    }

    // (e)
    let by_key: BTreeMap<&str, &CompletionMessage> = published.iter().map(|f| (f.metadata_key.as_str(), f)).collect();
    let mut announced: BTreeMap<&str, usize> = BTreeMap::new();
    for completion in &received {
        *announced.entry(completion.metadata_key.as_str()).or_default() += 1;
        match by_key.get(completion.metadata_key.as_str()) {
            None => fail(&mut verdict, format!("(e) announced without a published file: {}", completion.key)),
            Some(file) if *file != completion => {
                fail(&mut verdict, format!("(e) announcement differs from its metadata: {}", completion.key));
            }
            Some(_) => {}
        }
    }
    for file in &published {
        if !announced.contains_key(file.metadata_key.as_str()) {
            fail(&mut verdict, format!("(e) published but never announced: {}", file.key));
        }
    }
    verdict.duplicates = announced.values().map(|n| n - 1).sum();

    let tables = apply_tables(world, &mut verdict).await?;

    // (a)
    for object in &objects {
        let merged = match merge::merge_object(&*world.store, object, &received).await {
            Ok(merged) => merged,
            Err(e) => {
                fail(&mut verdict, format!("(a) {}: the lake does not merge: {e:#}", object.name));
                continue;
            }
        };
        let truth = local_export::quickstart::zuora_truth(&world.control, object)?;
        // A row Zuora deleted without ever being able to say so (created and deleted within one increment's
        // interval, seen alive in between by a backfill or a full export) stays in any lake: Zuora's limit, not
        // a loss. Such rows are counted, and only they are forgiven.
        let unreportable: std::collections::BTreeSet<String> = world
            .control
            .deleted_rows(&object.name)?
            .into_iter()
            .filter(|row| !row.reported)
            .map(|row| row.id)
            .collect();
        let ghosts: Vec<String> = merged
            .rows
            .keys()
            .filter(|id| !truth.rows.contains_key(*id) && unreportable.contains(*id))
            .cloned()
            .collect();
        verdict.unreportable_deletions += ghosts.len();
        if let Some(writer) = &tables {
            // (i)
            let mut expected: std::collections::BTreeSet<String> = truth.rows.keys().cloned().collect();
            expected.extend(ghosts.iter().cloned());
            match table_ids(writer, &object.name).await {
                Ok(ids) => {
                    let missing: Vec<_> = expected.difference(&ids).take(3).collect();
                    if !missing.is_empty() {
                        fail(&mut verdict, format!("(i) {}: the table lacks Zuora's rows {missing:?}", object.name));
                    }
                    let deleted: Vec<_> = ids.difference(&expected).take(3).collect();
                    if !deleted.is_empty() {
                        fail(
                            &mut verdict,
                            format!("(i) {}: the table has rows Zuora deleted {deleted:?}", object.name),
                        );
                    }
                }
                Err(e) => fail(&mut verdict, format!("(i) {}: the table cannot be read: {e}", object.name)),
            }
        }
        let mut merged = merged;
        for id in ghosts {
            merged.rows.remove(&id);
        }
        let differences = merge::differences(&merged, &truth, 3);
        if !differences.is_empty() {
            fail(
                &mut verdict,
                format!("(a) {}: the merged lake differs from Zuora: {}", object.name, differences.join("; ")),
            );
        }
    }

    // (g)
    let increments: std::collections::HashSet<String> =
        world.control.jobs().into_iter().filter(|j| j.is_session_increment()).map(|j| j.id).collect();
    for object in &objects {
        let Some(legacy) = &object.target.legacy_key else { continue };
        let of_increments = published.iter().filter(|f| f.object == object.name && increments.contains(&f.job_id));
        let latest = of_increments.max_by(|a, b| {
            (a.window.to, a.executed_at, &a.job_id, a.segment).cmp(&(b.window.to, b.executed_at, &b.job_id, b.segment))
        });
        let Some(latest) = latest else { continue };
        // The file the fixed key must hold: the latest increment's file, or its segments joined under one header.
        let mut segments: Vec<&CompletionMessage> =
            published.iter().filter(|f| f.job_id == latest.job_id && f.batch_id == latest.batch_id).collect();
        segments.sort_by_key(|f| f.segment);
        let mut file: Option<Vec<u8>> = Some(Vec::new());
        for segment in &segments {
            let bytes = world.store.get(&segment.bucket, &segment.key).await?;
            let body = bytes.as_deref().map(|b| match segment.segment {
                0 => b,
                _ => &b[b.iter().position(|&c| c == b'\n').map_or(b.len(), |end| end + 1)..],
            });
            file = file.zip(body).map(|(mut whole, body)| {
                whole.extend_from_slice(body);
                whole
            });
        }
        let records: u64 = segments.iter().map(|f| f.record_count).sum();
        let first = segments.first().copied().unwrap_or(latest);
        let copy = world.store.get(&object.target.bucket, legacy).await?.map(|b| b.to_vec());
        let compressed =
            |bytes: &[u8]| bytes.starts_with(&[0x1f, 0x8b]) || bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
        if copy.as_deref().is_some_and(compressed) {
            fail(&mut verdict, format!("(g) {legacy} holds compressed bytes, not a plain CSV"));
        }
        if copy.is_none() || copy != file {
            fail(
                &mut verdict,
                format!("(g) {legacy} is not a copy of {}, the latest increment of {}", latest.key, object.name),
            );
        }
        let metadata_at = object.target.legacy_metadata_key().unwrap_or_default();
        let old = world.store.get(&object.target.bucket, &metadata_at).await?;
        let old: Option<serde_json::Value> = old.and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let describes = old.as_ref().is_some_and(|old| {
            old["jobId"] == latest.job_id.as_str()
                && old["fileId"] == first.file_id.as_str()
                && old["recordCount"] == records
        });
        if !describes {
            let what =
                format!("(g) {metadata_at} does not describe {}, the latest increment of {}", latest.key, object.name);
            fail(&mut verdict, what);
        }
    }

    // (h)
    let jobs = world.control.jobs();
    let tries = 1 + MAX_REQUESTS_AGAIN as usize;
    let stateful = jobs.iter().filter(|j| j.partner.is_some()).count();
    if stateful > tries * world.sent.stateful {
        let sent = world.sent.stateful;
        fail(&mut verdict, format!("(h) {stateful} stateful jobs for {sent} stateful requests (at most {tries} each)"));
    }
    let windows = producer::plan::windows(&world.config.full_export, world.clock.now()).len();
    for object in &objects {
        let of_object = |j: &&zuora_sim::JobSummary| j.batches.iter().any(|b| b.name.as_deref() == Some(&object.name));
        let stateless = jobs.iter().filter(|j| j.partner.is_none()).filter(of_object).count();
        let first_loads = jobs
            .iter()
            .filter(|j| j.partner.is_some())
            .flat_map(|j| &j.batches)
            .filter(|b| b.full && b.name.as_deref() == Some(&object.name))
            .count();
        let full_exports = world.sent.full_exports.get(&object.name).copied().unwrap_or(0);
        let exact = world.sent.exact_windows.get(&object.name).copied().unwrap_or(0);
        let bound = tries * ((full_exports + first_loads) * windows + exact);
        if stateless > bound {
            fail(
                &mut verdict,
                format!(
                    "(h) {}: {stateless} full-export jobs, at most {bound} for {full_exports} full exports, {exact} exact \
                     windows and {first_loads} first loads ({windows} windows each)",
                    object.name
                ),
            );
        }
    }

    // (c)
    let (by_kills, leaked) = world.uploads.open();
    verdict.uploads_left_by_kills = by_kills;
    for key in leaked {
        fail(&mut verdict, format!("(c) multipart upload left open by a live process: {key}"));
    }

    // (d)
    for queue in [&world.queues.requests, &world.queues.jobs, &world.queues.lake] {
        let depth = queue.depth().await?;
        if depth != Default::default() {
            fail(&mut verdict, format!("(d) {} not empty: {depth:?}", queue.name()));
        }
    }
    let mut refused = std::collections::BTreeSet::new();
    for dlq in [&world.queues.requests_dlq, &world.queues.jobs_dlq, &world.queues.lake_dlq] {
        loop {
            let messages = dlq.receive(10, std::time::Duration::ZERO).await?;
            if messages.is_empty() {
                break;
            }
            for message in messages {
                let reason = message.attributes.get("reason").map_or("no reason", String::as_str);
                let forged = world.forged.contains(&message.body);
                if forged && reason.contains("ledger") {
                    refused.insert(message.body.clone());
                } else {
                    let dlq = dlq.name();
                    fail(&mut verdict, format!("(d) left in {dlq} after the redrive: {reason}: {}", message.body));
                }
                // Read once: the world is dropped after the verdict.
                dlq.delete(&message.receipt).await?;
            }
        }
    }
    verdict.forgeries_refused = refused.len();
    for body in world.forged.iter().filter(|body| !refused.contains(*body)) {
        fail(&mut verdict, format!("(d) a forged job message was not refused by the ledger check: {body}"));
    }
    Ok(verdict)
}

/// (i): the tables queue's completions applied by a table writer, as the deployed one would; `None` when the
/// configuration has no tables queue.
async fn apply_tables(world: &World, verdict: &mut Verdict) -> anyhow::Result<Option<TableWriter>> {
    let Some(queue) = &world.queues.tables else { return Ok(None) };
    let services = common::services::Services::from_parts(world.store.clone(), world.queues.clone());
    let writer = TableWriter::from_config(&world.config, &services)?;
    loop {
        let messages = queue.receive(10, std::time::Duration::ZERO).await?;
        if messages.is_empty() {
            break;
        }
        for message in messages {
            match writer.handle(&message).await {
                Ok(Settled::Applied(_)) => {}
                Ok(Settled::DeadLettered(reason)) => verdict.failures.push(format!("(i) a file refused: {reason}")),
                Err(e) => verdict.failures.push(format!("(i) a file not applied: {e}")),
            }
        }
        // Compaction and expiry between batches, as the service runs them when its queue falls idle: the files
        // applied after a compaction must land on the compacted table as on any other.
        writer.maintain(std::time::Duration::ZERO).await;
    }
    let depth = queue.depth().await?;
    if depth != Default::default() {
        verdict.failures.push(format!("(i) {} not empty after the writer: {depth:?}", queue.name()));
    }
    Ok(Some(writer))
}

/// The Ids of an object's table; none before its first file.
async fn table_ids(writer: &TableWriter, object: &str) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let table = writer.table(object).await?;
    if table.version().is_none() {
        return Ok(Default::default());
    }
    Ok(table_writer::delta::ids(&table).await?)
}
