//! A batch's result: which rows, in which shape, rendered as CSV chunk by chunk.

use crate::data::{Related, RowState, Snapshot, write_joined};
use crate::schema::label;
use crate::zoql::{Column, Query};
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use futures::{Stream, StreamExt, stream};
use std::io::Write;
use std::sync::Arc;

/// Largest chunk a file is sent in.
const CHUNK: usize = 64 * 1024;

/// Which rows a batch returns.
#[derive(Debug, Clone, Copy)]
pub enum Window {
    /// Live rows as of `upper`, no deleted rows.
    Full {
        /// Exclusive upper bound.
        upper: DateTime<Utc>,
    },
    /// Rows changed in `[lower, upper)`, plus rows deleted then that existed before `lower`, as far as Zuora still
    /// keeps them (deleted since `purged_before`).
    Incremental {
        /// Inclusive lower bound.
        lower: DateTime<Utc>,
        /// Exclusive upper bound.
        upper: DateTime<Utc>,
        /// Rows deleted before this instant are purged: the increment does not report them.
        purged_before: DateTime<Utc>,
    },
    /// Live rows as of `upper`, plus, when forced, the deleted rows Zuora still keeps (deleted since
    /// `purged_before`).
    Stateless {
        /// Exclusive upper bound.
        upper: DateTime<Utc>,
        /// `deleted.forceExport`.
        include_deleted: bool,
        /// Rows deleted before this instant are purged.
        purged_before: DateTime<Utc>,
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

/// Everything needed to render one batch's file(s): fixed when the job is submitted, its tables taken again when it
/// has run (`Sim::as_run`).
#[derive(Clone)]
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
    /// The related objects joined fields are read from, as of the same instant.
    pub related: Arc<Related>,
    /// When a row's joined fields are read: the window's end unless given per row (the ground truth gives the
    /// instant of the last batch that returned the row).
    pub joined_at: Option<Arc<std::collections::HashMap<u64, DateTime<Utc>>>>,
}

impl BatchPlan {
    /// The row with key `key` and its deleted flag, if the batch returns it.
    pub(crate) fn classify(&self, key: u64) -> Option<(RowState, bool)> {
        let upper = self.window.upper();
        let row = self.snapshot.state_at(key, upper - Duration::microseconds(1))?;
        let passes = |row: &RowState| self.query.filter.as_ref().is_none_or(|f| f.matches(&self.snapshot, row));
        let returned = match self.window {
            Window::Full { .. } => row.deleted_at.is_none().then_some(false),
            Window::Incremental { lower, purged_before, .. } => match row.deleted_at {
                Some(deleted) => {
                    let reported = deleted >= lower.max(purged_before) && row.created < lower && self.deleted.is_some();
                    reported.then_some(true)
                }
                None => (row.updated >= lower).then_some(false),
            },
            Window::Stateless { include_deleted, purged_before, .. } => match row.deleted_at {
                Some(deleted) => (include_deleted && deleted >= purged_before).then_some(true),
                None => Some(false),
            },
        }?;
        passes(&row).then_some((row, returned))
    }

    /// The rows of the batch, in file order.
    pub fn rows(&self) -> impl Iterator<Item = (RowState, bool)> + '_ {
        self.snapshot.keys().filter_map(|key| self.classify(key))
    }

    /// Every key, sorted by the query's ORDER BY on the rows' values at the window's end (then by key: a stable
    /// order); keys the batch does not return sort anywhere and are skipped when rendering.
    fn ordered_keys(&self) -> Vec<u64> {
        let at = self.window.upper() - Duration::microseconds(1);
        let mut keyed: Vec<(Vec<crate::data::Value>, u64)> = self
            .snapshot
            .keys()
            .map(|key| {
                let values = self.snapshot.state_at(key, at).map_or_else(Vec::new, |row| {
                    self.query.order.iter().map(|(field, _)| self.snapshot.value(*field, &row)).collect()
                });
                (values, key)
            })
            .collect();
        keyed.sort_by(|(a, ka), (b, kb)| {
            let by_fields = a.iter().zip(b).zip(&self.query.order).map(|((a, b), (_, descending))| {
                let ordering = a.sort_order(b);
                if *descending { ordering.reverse() } else { ordering }
            });
            by_fields.fold(std::cmp::Ordering::Equal, std::cmp::Ordering::then).then(ka.cmp(kb))
        });
        keyed.into_iter().map(|(_, key)| key).collect()
    }

    /// Records in the batch (at most the query's `LIMIT`).
    pub fn count(&self) -> u64 {
        (self.rows().count() as u64).min(self.query.limit.unwrap_or(u64::MAX))
    }

    fn header(&self, out: &mut Vec<u8>) {
        let object = self.snapshot.schema.name;
        let mut names: Vec<String> = self.deleted.iter().map(|d| d.header.clone()).collect();
        for column in &self.query.fields {
            let (prefix, field) = match column {
                Column::Own(index) => (object, self.snapshot.schema.fields[*index].name),
                Column::Joined(join) => (join.path.relation, join.field_name),
            };
            names.push(if self.api_names {
                format!("{prefix}.{field}")
            } else {
                format!("{}: {}", label(prefix), label(field))
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
        let at = || {
            let at = self.joined_at.as_ref().and_then(|at| at.get(&row.key).copied());
            at.unwrap_or(self.window.upper() - Duration::microseconds(1))
        };
        for column in &self.query.fields {
            if !first {
                out.push(b',');
            }
            first = false;
            scratch.clear();
            match column {
                Column::Own(index) => self.snapshot.write_value(*index, row, scratch),
                // A deleted row's joined fields are empty, as in Zuora's example of deleted records.
                Column::Joined(_) if deleted => {}
                Column::Joined(join) => {
                    write_joined(&self.snapshot.generator, &self.related, join, row.key, at(), scratch);
                }
            }
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

/// Keys rendered together: one unit of work for a rendering thread.
const BLOCK_KEYS: u64 = 2048;

/// Every key that may hold a row, in file order (generated ones, then inserted ones; or the query's ORDER BY), by
/// position.
struct Keys {
    base_rows: u64,
    inserted: Vec<u64>,
    /// Every key in ORDER BY order, when the query has one.
    ordered: Option<Vec<u64>>,
}

impl Keys {
    fn of(plan: &BatchPlan) -> Self {
        let inserted = plan.snapshot.overlay.range(crate::data::INSERTED_KEYS..).map(|(k, _)| *k).collect();
        let ordered = (!plan.query.order.is_empty()).then(|| plan.ordered_keys());
        Self { base_rows: plan.snapshot.base_rows, inserted, ordered }
    }

    /// The key at `position` in file order.
    fn at(&self, position: u64) -> u64 {
        if let Some(ordered) = &self.ordered {
            return ordered[position as usize];
        }
        match position.checked_sub(self.base_rows) {
            None => position,
            Some(i) => self.inserted[i as usize],
        }
    }

    fn len(&self) -> u64 {
        self.base_rows + self.inserted.len() as u64
    }

    fn blocks(&self) -> u64 {
        self.len().div_ceil(BLOCK_KEYS)
    }

    /// The rows of the keys of block `index`, rendered, and the end offset of each row.
    fn render(&self, plan: &BatchPlan, index: u64) -> Block {
        let positions = index * BLOCK_KEYS..((index + 1) * BLOCK_KEYS).min(self.len());
        let mut block = Block { bytes: Vec::with_capacity(CHUNK), ends: Vec::new() };
        let mut scratch = Vec::new();
        for position in positions {
            if let Some((row, deleted)) = plan.classify(self.at(position)) {
                plan.row(&row, deleted, &mut block.bytes, &mut scratch);
                block.ends.push(block.bytes.len());
            }
        }
        block
    }
}

/// Rendered rows.
struct Block {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

/// What turns the batch's rendered rows into one file's bytes: the rows of the segment (skip, take), gzipped
/// when asked.
struct Cutter {
    skip: u64,
    take: u64,
    gzip: Option<GzEncoder<Vec<u8>>>,
}

impl Cutter {
    /// The file's first bytes (the header) and its cutter.
    fn start(spec: &FileSpec) -> (Self, Option<Bytes>) {
        let mut cutter = Self {
            skip: spec.skip,
            take: spec.take,
            // zlib's default level, which a gzip stream written with Java's (or most languages') defaults has.
            gzip: spec.gzip.then(|| GzEncoder::new(Vec::new(), Compression::default())),
        };
        let mut header = Vec::new();
        spec.plan.header(&mut header);
        let first = cutter.encode(header);
        (cutter, first)
    }

    /// True once the segment has all its rows.
    fn is_full(&self) -> bool {
        self.take == 0
    }

    /// The bytes of the block's rows that belong to the file.
    fn cut(&mut self, block: Block) -> Option<Bytes> {
        let skipped = self.skip.min(block.ends.len() as u64) as usize;
        self.skip -= skipped as u64;
        let rows = &block.ends[skipped..];
        let taken = self.take.min(rows.len() as u64) as usize;
        self.take -= taken as u64;
        let from = skipped.checked_sub(1).map_or(0, |i| block.ends[i]);
        let to = if taken == 0 { from } else { rows[taken - 1] };
        let mut bytes = block.bytes;
        bytes.truncate(to);
        bytes.drain(..from);
        self.encode(bytes)
    }

    fn encode(&mut self, plain: Vec<u8>) -> Option<Bytes> {
        let bytes = match self.gzip.as_mut() {
            None => plain,
            Some(encoder) => {
                encoder.write_all(&plain).ok()?;
                std::mem::take(encoder.get_mut())
            }
        };
        (!bytes.is_empty()).then(|| Bytes::from(bytes))
    }

    /// The last bytes (the end of the gzip stream).
    fn finish(&mut self) -> Option<Bytes> {
        let rest = self.gzip.take()?.finish().ok()?;
        (!rest.is_empty()).then(|| Bytes::from(rest))
    }
}

/// A file's bytes, rendered block by block on the calling thread.
pub struct FileBody {
    plan: Arc<BatchPlan>,
    keys: Keys,
    next_block: u64,
    cutter: Cutter,
    pending: Option<Bytes>,
}

impl FileBody {
    /// Starts rendering a file.
    pub fn new(spec: FileSpec) -> Self {
        let keys = Keys::of(&spec.plan);
        let (cutter, header) = Cutter::start(&spec);
        Self { plan: spec.plan, keys, next_block: 0, cutter, pending: header }
    }
}

impl Iterator for FileBody {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if let Some(bytes) = self.pending.take() {
            return Some(bytes);
        }
        while self.next_block < self.keys.blocks() && !self.cutter.is_full() {
            let block = self.keys.render(&self.plan, self.next_block);
            self.next_block += 1;
            if let Some(bytes) = self.cutter.cut(block) {
                return Some(bytes);
            }
        }
        self.cutter.finish()
    }
}

/// A file's bytes as they are sent: blocks rendered ahead on `threads` blocking threads and sent in order, in
/// chunks of at most 64 KiB. Rendering is the simulator's costliest work; spread over the cores it keeps up with a
/// client reading at loopback speed. A rendering thread that fails ends the stream with an error (a reset).
/// With `threads` 0 the blocks are rendered on the serving task itself.
pub fn file_chunks(spec: FileSpec, threads: usize) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    let keys = Arc::new(Keys::of(&spec.plan));
    let (cutter, header) = Cutter::start(&spec);
    let plan = spec.plan;
    let blocks = stream::iter(0..keys.blocks())
        .map(move |index| {
            let (keys, plan) = (keys.clone(), plan.clone());
            let render = move || keys.render(&plan, index);
            async move { if threads == 0 { Ok(render()) } else { tokio::task::spawn_blocking(render).await } }
        })
        .buffered(threads + 1);
    let rows = stream::unfold(Some((blocks, cutter)), |state| async move {
        let (mut blocks, mut cutter) = state?;
        while !cutter.is_full() {
            match blocks.next().await {
                None => break,
                Some(Err(e)) => return Some((Err(std::io::Error::other(e)), None)),
                Some(Ok(block)) => {
                    if let Some(bytes) = cutter.cut(block) {
                        return Some((Ok(bytes), Some((blocks, cutter))));
                    }
                }
            }
        }
        cutter.finish().map(|rest| (Ok(rest), None))
    });
    stream::iter(header.map(Ok)).chain(rows).flat_map(|item| {
        let chunks: Vec<std::io::Result<Bytes>> = match item {
            Ok(bytes) => {
                (0..bytes.len()).step_by(CHUNK).map(|at| Ok(bytes.slice(at..bytes.len().min(at + CHUNK)))).collect()
            }
            Err(e) => vec![Err(e)],
        };
        stream::iter(chunks)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Generator;
    use crate::schema::{ObjectSchema, objects};
    use std::collections::HashMap;

    fn plan(
        object: &str,
        query: &str,
        rows: u64,
        seed: u64,
        api_names: bool,
        deleted: Option<DeletedColumn>,
    ) -> BatchPlan {
        let all: Vec<Arc<ObjectSchema>> = objects().into_iter().map(Arc::new).collect();
        let schema = all.iter().find(|o| o.name == object).unwrap().clone();
        let base_rows: HashMap<&'static str, u64> = objects().iter().map(|o| (o.name, o.default_rows)).collect();
        let generator = Generator {
            seed,
            genesis: "2020-01-01T00:00:00Z".parse().unwrap(),
            history: Duration::days(1461),
            base_rows: Arc::new(base_rows),
        };
        let query = crate::zoql::parse(query, &schema, &all).unwrap();
        let related = all
            .iter()
            .map(|o| (o.name, Snapshot::new(o.clone(), o.default_rows, Default::default(), generator.clone())))
            .collect();
        BatchPlan {
            snapshot: Snapshot::new(schema, rows, Default::default(), generator),
            query,
            deleted,
            window: Window::Full { upper: "2026-01-01T00:00:00Z".parse().unwrap() },
            api_names,
            line_ending: "\n".to_owned(),
            related: Arc::new(related),
            joined_at: None,
        }
    }

    fn render(plan: BatchPlan) -> Vec<u8> {
        let spec = FileSpec { plan: Arc::new(plan), skip: 0, take: u64::MAX, gzip: false };
        FileBody::new(spec).flat_map(|chunk| chunk.to_vec()).collect()
    }

    /// The file as row-by-row rendering makes it: header, then the segment's rows.
    fn oracle(plan: &BatchPlan, skip: u64, take: u64) -> Vec<u8> {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        plan.header(&mut out);
        for (row, deleted) in plan.rows().skip(skip as usize).take(take as usize) {
            plan.row(&row, deleted, &mut out, &mut scratch);
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_rendered_in_parallel_blocks_are_the_rows_in_order_whatever_the_segment() {
        let query = "select Id, AccountNumber, Balance, Notes from Account";
        let rows = 3 * BLOCK_KEYS + 17;
        let plan = Arc::new(plan("Account", query, rows, 3, true, None));
        let segments =
            [(0, u64::MAX), (0, 1), (5, BLOCK_KEYS), (BLOCK_KEYS - 1, 2), (2 * BLOCK_KEYS + 3, 100), (rows, 10)];
        for (skip, take) in segments {
            let expected = oracle(&plan, skip, take);
            for gzip in [false, true] {
                let spec = FileSpec { plan: plan.clone(), skip, take, gzip };
                let sequential: Vec<u8> = FileBody::new(spec.clone()).flat_map(|chunk| chunk.to_vec()).collect();
                let chunks: Vec<Bytes> = file_chunks(spec, 2).map(Result::unwrap).collect().await;
                assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= CHUNK), "chunks of 1 byte to 64 KiB");
                let parallel = chunks.concat();
                let plain = |bytes: Vec<u8>| {
                    if !gzip {
                        return bytes;
                    }
                    let mut out = Vec::new();
                    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes.as_slice()), &mut out).unwrap();
                    out
                };
                assert!(plain(sequential) == expected, "sequential, skip {skip} take {take} gzip {gzip}");
                assert!(plain(parallel) == expected, "parallel, skip {skip} take {take} gzip {gzip}");
            }
        }
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
