//! The tables behind the API: changes (inserts, updates, deletes), sizes, and the ground truth tests compare
//! lakes with.

use super::*;

impl Sim {
    /// Applies changes to an object's table at the current simulated instant.
    pub fn mutate(&self, object: &str, mutation: Mutation) -> Result<MutationResult, SimError> {
        let schema = self.schema(object).ok_or_else(|| SimError::UnknownObject(object.to_owned()))?;
        let now = self.clock.now();
        let snapshot = self.snapshot(&schema);
        let chosen = self.pick_live_rows(&snapshot, now, mutation.update + mutation.delete + mutation.undated_update);
        let (updates, rest) = chosen.split_at((mutation.update as usize).min(chosen.len()));
        let (deletes, undated) = rest.split_at((mutation.delete as usize).min(rest.len()));
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
        for &key in undated {
            table.record(key, Event { at: now, kind: EventKind::UndatedUpdate });
            result.undated.push(id(key));
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
        self.truth(&schema, zoql::Query { fields, filter: None, order: Vec::new(), limit: None })
    }

    /// What a lake fed with every completed job of this query should hold now: the live rows that pass its
    /// filter, its columns (API names), sorted by Id. A joined field is read as the related row stood when the
    /// last completed batch on the object that selects joined fields returned the row (Zuora exports a row again
    /// only when the row itself changes, not when a row it joins does; a batch without joins, such as an audit's
    /// `SELECT Id, UpdatedDate`, feeds no joined value), or now for a row no batch returned yet.
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
        let plans: Vec<(Arc<BatchPlan>, bool)> = {
            let jobs = lock(&self.jobs);
            jobs.list
                .iter()
                .filter(|job| job.status(now) == "completed")
                .flat_map(|job| job.batches.iter())
                .filter(|batch| batch.outcome == Outcome::Normal && batch.plan.snapshot.schema.name == object)
                .map(|batch| (batch.plan.clone(), batch.record_count.is_some()))
                .collect()
        };
        // A batch nobody has read yet still holds the tables as they were at submission: as it ran.
        plans.into_iter().map(|(plan, run)| if run { plan } else { Arc::new(self.as_run(&plan)) }).collect()
    }

    /// For each row some completed batch with joined fields returned alive, the instant the last such batch read
    /// it at.
    fn last_returned(&self, snapshot: &Snapshot) -> HashMap<u64, DateTime<Utc>> {
        let mut completed = self.completed_batches(snapshot.schema.name);
        completed.retain(|plan| plan.query.fields.iter().any(|c| matches!(c, zoql::Column::Joined(_))));
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

    #[test]
    fn records_split_outside_quotes_only() {
        assert_eq!(split_records("h\n\"a\nb\",1\nc,2\n"), ["h\n", "\"a\nb\",1\n", "c,2\n"]);
    }
}
