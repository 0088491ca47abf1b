//! A batch's result: which rows, in which shape, rendered as CSV chunk by chunk.

use crate::data::{RowState, Snapshot};
use crate::schema::label;
use crate::zoql::Query;
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;
use std::sync::Arc;

/// Deleted rows are kept 30 days.
const DELETED_RETENTION_DAYS: i64 = 30;
/// Size of the chunks a file is sent in.
const CHUNK: usize = 64 * 1024;

/// Which rows a batch returns.
#[derive(Debug, Clone, Copy)]
pub enum Window {
    /// Live rows as of `upper`, no deleted rows.
    Full {
        /// Exclusive upper bound.
        upper: DateTime<Utc>,
    },
    /// Rows changed in `[lower, upper)`, plus rows deleted then that existed before `lower`.
    Incremental {
        /// Inclusive lower bound.
        lower: DateTime<Utc>,
        /// Exclusive upper bound.
        upper: DateTime<Utc>,
    },
    /// Live rows as of `upper`, plus rows deleted in the last 30 days when forced.
    Stateless {
        /// Exclusive upper bound.
        upper: DateTime<Utc>,
        /// `deleted.forceExport`.
        include_deleted: bool,
    },
}

impl Window {
    /// The exclusive upper bound.
    pub fn upper(&self) -> DateTime<Utc> {
        match *self {
            Self::Full { upper } | Self::Incremental { upper, .. } | Self::Stateless { upper, .. } => upper,
        }
    }

    /// The inclusive lower bound, if any.
    pub fn lower(&self) -> Option<DateTime<Utc>> {
        match *self {
            Self::Incremental { lower, .. } => Some(lower),
            _ => None,
        }
    }
}

/// The deleted-flag column.
#[derive(Debug, Clone)]
pub struct DeletedColumn {
    /// Its name, `<Object>.<column>`.
    pub header: String,
    /// `1`/`0` rather than `true`/`false`.
    pub numeric: bool,
}

/// Everything needed to render one batch's file(s), fixed when the job is submitted.
pub struct BatchPlan {
    /// The object's rows.
    pub snapshot: Snapshot,
    /// The query.
    pub query: Query,
    /// The flag column, if deleted rows were asked for.
    pub deleted: Option<DeletedColumn>,
    /// Which rows.
    pub window: Window,
    /// `Object.Field` headers (true) or labels.
    pub api_names: bool,
    /// Line ending.
    pub line_ending: String,
}

impl BatchPlan {
    /// The row with key `key` and its deleted flag, if the batch returns it.
    fn classify(&self, key: u64) -> Option<(RowState, bool)> {
        let upper = self.window.upper();
        let row = self.snapshot.state_at(key, upper - Duration::microseconds(1))?;
        let passes = |row: &RowState| self.query.filter.as_ref().is_none_or(|f| f.matches(&self.snapshot, row));
        let returned = match self.window {
            Window::Full { .. } => row.deleted_at.is_none().then_some(false),
            Window::Incremental { lower, .. } => match row.deleted_at {
                Some(deleted) => (deleted >= lower && row.created < lower && self.deleted.is_some()).then_some(true),
                None => (row.updated >= lower).then_some(false),
            },
            Window::Stateless { include_deleted, upper } => match row.deleted_at {
                Some(deleted) => {
                    (include_deleted && deleted >= upper - Duration::days(DELETED_RETENTION_DAYS)).then_some(true)
                }
                None => Some(false),
            },
        }?;
        passes(&row).then_some((row, returned))
    }

    /// The rows of the batch, in file order.
    pub fn rows(&self) -> impl Iterator<Item = (RowState, bool)> + '_ {
        self.snapshot.keys().filter_map(|key| self.classify(key))
    }

    /// Records in the batch.
    pub fn count(&self) -> u64 {
        self.rows().count() as u64
    }

    fn header(&self, out: &mut Vec<u8>) {
        let object = self.snapshot.schema.name;
        let mut names: Vec<String> = self.deleted.iter().map(|d| d.header.clone()).collect();
        for &index in &self.query.fields {
            let field = self.snapshot.schema.fields[index].name;
            names.push(if self.api_names {
                format!("{object}.{field}")
            } else {
                format!("{}: {}", label(object), label(field))
            });
        }
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_field(out, name.as_bytes());
        }
        out.extend_from_slice(self.line_ending.as_bytes());
    }

    fn row(&self, row: &RowState, deleted: bool, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        let mut first = true;
        if let Some(column) = &self.deleted {
            out.extend_from_slice(match (column.numeric, deleted) {
                (true, true) => b"1",
                (true, false) => b"0",
                (false, true) => b"true",
                (false, false) => b"false",
            });
            first = false;
        }
        for &index in &self.query.fields {
            if !first {
                out.push(b',');
            }
            first = false;
            scratch.clear();
            self.snapshot.write_value(index, row, scratch);
            write_field(out, scratch);
        }
        out.extend_from_slice(self.line_ending.as_bytes());
    }
}

/// RFC 4180: quote a field holding a comma, quote, CR or LF, doubling its quotes.
pub fn write_field(out: &mut Vec<u8>, value: &[u8]) {
    if value.iter().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n')) {
        out.push(b'"');
        for &b in value {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(value);
    }
}

/// One file of a batch: all its rows, or one segment of them.
#[derive(Clone)]
pub struct FileSpec {
    /// The batch.
    pub plan: Arc<BatchPlan>,
    /// Rows skipped before this file.
    pub skip: u64,
    /// At most this many rows.
    pub take: u64,
    /// Gzip the file.
    pub gzip: bool,
}

/// A file's bytes, produced chunk by chunk as they are sent.
pub struct FileBody {
    spec: FileSpec,
    keys: Box<dyn Iterator<Item = u64> + Send>,
    skipped: u64,
    taken: u64,
    header_done: bool,
    finished: bool,
    scratch: Vec<u8>,
    gzip: Option<GzEncoder<Vec<u8>>>,
}

impl FileBody {
    /// Starts rendering a file.
    pub fn new(spec: FileSpec) -> Self {
        let plan = spec.plan.clone();
        let inserted: Vec<u64> = plan.snapshot.overlay.range(crate::data::INSERTED_KEYS..).map(|(k, _)| *k).collect();
        let keys = Box::new((0..plan.snapshot.base_rows).chain(inserted));
        let gzip = spec.gzip.then(|| GzEncoder::new(Vec::new(), Compression::fast()));
        Self { spec, keys, skipped: 0, taken: 0, header_done: false, finished: false, scratch: Vec::new(), gzip }
    }

    fn next_plain(&mut self) -> Option<Vec<u8>> {
        if self.finished {
            return None;
        }
        let plan = self.spec.plan.clone();
        let mut out = Vec::with_capacity(CHUNK + 4096);
        if !self.header_done {
            plan.header(&mut out);
            self.header_done = true;
        }
        while out.len() < CHUNK && self.taken < self.spec.take {
            let Some(key) = self.keys.next() else {
                self.finished = true;
                break;
            };
            let Some((row, deleted)) = plan.classify(key) else { continue };
            if self.skipped < self.spec.skip {
                self.skipped += 1;
                continue;
            }
            plan.row(&row, deleted, &mut out, &mut self.scratch);
            self.taken += 1;
        }
        if self.taken >= self.spec.take {
            self.finished = true;
        }
        Some(out)
    }
}

impl Iterator for FileBody {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.gzip.is_none() {
            return self.next_plain().filter(|c| !c.is_empty()).map(Bytes::from);
        }
        loop {
            match self.next_plain() {
                Some(plain) => {
                    let encoder = self.gzip.as_mut()?;
                    encoder.write_all(&plain).ok()?;
                    let produced = std::mem::take(encoder.get_mut());
                    if !produced.is_empty() {
                        return Some(Bytes::from(produced));
                    }
                }
                None => {
                    let encoder = self.gzip.take()?;
                    return encoder.finish().ok().filter(|rest| !rest.is_empty()).map(Bytes::from);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Generator;
    use crate::schema::objects;
    use std::collections::HashMap;

    fn plan(
        object: &str,
        query: &str,
        rows: u64,
        seed: u64,
        api_names: bool,
        deleted: Option<DeletedColumn>,
    ) -> BatchPlan {
        let schema = Arc::new(objects().into_iter().find(|o| o.name == object).unwrap());
        let base_rows: HashMap<&'static str, u64> = objects().iter().map(|o| (o.name, o.default_rows)).collect();
        let generator = Generator {
            seed,
            genesis: "2020-01-01T00:00:00Z".parse().unwrap(),
            history: Duration::days(1461),
            base_rows: Arc::new(base_rows),
        };
        let query = crate::zoql::parse(query, &schema).unwrap();
        BatchPlan {
            snapshot: Snapshot::new(schema, rows, Default::default(), generator),
            query,
            deleted,
            window: Window::Full { upper: "2026-01-01T00:00:00Z".parse().unwrap() },
            api_names,
            line_ending: "\n".to_owned(),
        }
    }

    fn render(plan: BatchPlan) -> Vec<u8> {
        let spec = FileSpec { plan: Arc::new(plan), skip: 0, take: u64::MAX, gzip: false };
        FileBody::new(spec).flat_map(|chunk| chunk.to_vec()).collect()
    }

    #[test]
    fn fields_are_quoted_only_when_rfc_4180_needs_it() {
        let quoted = |value: &str| {
            let mut out = Vec::new();
            write_field(&mut out, value.as_bytes());
            String::from_utf8(out).unwrap()
        };
        assert_eq!(quoted("plain"), "plain");
        assert_eq!(quoted(""), "");
        assert_eq!(quoted("München 東京 🚀"), "München 東京 🚀");
        assert_eq!(quoted("a,b"), "\"a,b\"");
        assert_eq!(quoted("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quoted("one\ntwo"), "\"one\ntwo\"");
        assert_eq!(quoted("one\r\ntwo"), "\"one\r\ntwo\"");
        assert_eq!(quoted("\""), "\"\"\"\"");
    }

    #[test]
    fn headers_are_labels_unless_query_labels_are_asked_for_and_the_flag_column_comes_first() {
        let deleted = || Some(DeletedColumn { header: "RatePlanCharge.IsDeleted".to_owned(), numeric: false });
        let query = "select id, name, mrr, RatePlanCharge.RatePlanId from rateplancharge";
        let labels = render(plan("RatePlanCharge", query, 0, 1, false, deleted()));
        assert_eq!(
            String::from_utf8(labels).unwrap(),
            "RatePlanCharge.IsDeleted,Rate Plan Charge: ID,Rate Plan Charge: Name,Rate Plan Charge: MRR,\
             Rate Plan Charge: Rate Plan ID\n",
            "header only: no rows"
        );
        let names = render(plan("RatePlanCharge", query, 0, 1, true, None));
        assert_eq!(
            String::from_utf8(names).unwrap(),
            "RatePlanCharge.Id,RatePlanCharge.Name,RatePlanCharge.MRR,RatePlanCharge.RatePlanId\n"
        );
    }

    #[test]
    fn generation_is_deterministic_per_seed_and_free_text_stresses_csv() {
        let query =
            "select Id, CreatedDate, UpdatedDate, AccountNumber, Balance, AutoPay, BillCycleDay, Notes from Account";
        let a = render(plan("Account", query, 3000, 7, true, None));
        let b = render(plan("Account", query, 3000, 7, true, None));
        let c = render(plan("Account", query, 3000, 8, true, None));
        assert_eq!(a, b, "same seed, same bytes");
        assert_ne!(a, c, "another seed, other data");

        let mut reader = csv::ReaderBuilder::new().from_reader(a.as_slice());
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 3000);
        let notes: Vec<&str> = records.iter().map(|r| &r[7]).collect();
        let hostile =
            notes.iter().filter(|n| n.contains(',') || n.contains('"') || n.contains('\n') || !n.is_ascii()).count();
        assert!(hostile > 3000 / 4, "a good fraction of free text stresses CSV: {hostile}");
        assert!(notes.iter().any(|n| n.contains("\r\n")), "CRLF inside a field");
        assert!(notes.iter().any(|n| n.is_empty()), "some nulls");
        for record in &records {
            assert!(
                record[0].len() == 32 && record[0].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert!(record[1].ends_with("+0000") && record[1].len() == 24, "{}", &record[1]);
            assert!(record[2] >= record[1], "updated after created");
            assert!(record[4].is_empty() || record[4].parse::<f64>().is_ok() && !record[4].contains(','));
            assert!(matches!(&record[5], "true" | "false"));
        }
        let ids: std::collections::HashSet<&str> = records.iter().map(|r| &r[0]).collect();
        assert_eq!(ids.len(), 3000, "ids are distinct");
    }
}
